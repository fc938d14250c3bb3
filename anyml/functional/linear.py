"""Affine maps: :math:`Z = XW + b`."""

from __future__ import annotations

from typing import Any

from anyml.backend import Array, namespace_of, replaceable

__all__ = ["linear_backward", "linear_forward"]



@replaceable
def linear_forward(X: Array, W: Array, b: Array, xp: Any = None) -> tuple[Array, tuple[Array, Array]]:
    r"""Compute :math:`Z = XW + b`.

    Parameters
    ----------
    X : array of shape (n_ex, n_in)
    W : array of shape (n_in, n_out)
    b : array of shape (n_out,)

    Returns
    -------
    Z : array of shape (n_ex, n_out)
    cache : tuple
        ``(X, W)``, what :func:`linear_backward` needs.
    """
    xp = namespace_of(X) if xp is None else xp
    return xp.matmul(X, W) + b, (X, W)


@replaceable
def linear_backward(dZ: Array, cache: tuple[Array, Array], xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :math:`Z = XW + b`.

    .. math::

        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z} W^\top, \quad
        \frac{\partial L}{\partial W} = X^\top \frac{\partial L}{\partial Z}, \quad
        \frac{\partial L}{\partial b} = \sum_{\text{examples}} \frac{\partial L}{\partial Z}

    Returns
    -------
    dX, dW, db : arrays shaped like X, W and b
    """
    xp = namespace_of(dZ) if xp is None else xp
    X, W = cache
    Xt = xp.matrix_transpose(X)
    # one example: dW is an outer product, the same single products as the matrix product's, which
    # BLAS runs several times slower (1.2 against 0.3 ms for 1024 x 1024 in OpenBLAS; NumPy runs the
    # product with the column second 1.4x slower still)
    dW = dZ * Xt if X.shape[0] == 1 else xp.matmul(Xt, dZ)
    return xp.matmul(dZ, xp.matrix_transpose(W)), dW, xp.sum(dZ, axis=0)
