"""The softmax function along one axis, its gradient, and the log-softmax."""

from __future__ import annotations

from typing import Any

from anyml.backend import Array, namespace_of, replaceable
from anyml.functional.norm import _ones

__all__ = ["log_softmax", "softmax_backward", "softmax_forward"]



@replaceable
def softmax_forward(X: Array, axis: int = -1, xp: Any = None) -> tuple[Array, tuple[Array, int]]:
    r"""Compute :math:`y_i = e^{x_i - m} / \sum_j e^{x_j - m}` along ``axis``, with :math:`m = \max_j x_j`.

    Subtracting the maximum leaves the result unchanged and keeps :math:`e^x` from overflowing.

    Returns
    -------
    Y : array shaped like X
    cache : tuple
        ``(Y, axis)``: the backward pass needs only the output.
    """
    xp = namespace_of(X) if xp is None else xp
    Y = _softmax(X - xp.max(X, axis=axis, keepdims=True), axis, xp)
    return Y, (Y, axis)


@replaceable
def log_softmax(X: Array, axis: int = -1, xp: Any = None) -> Array:
    r"""Compute :math:`\log y_i = (x_i - m) - \log \sum_j e^{x_j - m}` along ``axis``, :math:`m = \max_j x_j`.

    The log-sum-exp form is exact and never takes the logarithm of an underflowed probability, so it
    stays finite for any finite ``X`` (``log(softmax_forward(X)[0])`` does not).
    """
    xp = namespace_of(X) if xp is None else xp
    shifted = X - xp.max(X, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def _is_last(axis: int, ndim: int) -> bool:
    return axis in (-1, ndim - 1)


def _softmax(Z: Array, axis: int, xp: Any) -> Array:
    """The softmax of ``Z`` whose maximum along ``axis`` has already been subtracted."""
    E = xp.exp(Z)
    if _is_last(axis, E.ndim):
        # a matrix-vector product sums the rows faster than a reduction (with a cached vector)
        sums = xp.matmul(E, _ones((int(E.shape[-1]), 1), E, xp))
    else:
        sums = xp.sum(E, axis=axis, keepdims=True)
    E /= sums
    return E


def _softmax_grad_inplace(G: Array, Y: Array, axis: int, xp: Any) -> Array:
    """``Y * (G - sum(G * Y))`` along ``axis``, written over ``G`` (which must be an array of the
    caller's own making)."""
    G -= _weighted_sums(G, Y, axis, xp)
    G *= Y
    return G


def _weighted_sums(G: Array, Y: Array, axis: int, xp: Any) -> Array:
    if _is_last(axis, G.ndim):
        return xp.expand_dims(xp.vecdot(G, Y, axis=-1), axis=-1)
    return xp.sum(G * Y, axis=axis, keepdims=True)


@replaceable
def softmax_backward(dY: Array, cache: tuple[Array, int], xp: Any = None) -> Array:
    r"""The vector-Jacobian product of the softmax.

    With :math:`\partial y_i / \partial x_j = y_i (\delta_{ij} - y_j)`:

    .. math:: \frac{\partial L}{\partial x} = y \odot \Big(\frac{\partial L}{\partial y}
              - \sum_k \frac{\partial L}{\partial y_k} y_k\Big)
    """
    xp = namespace_of(dY) if xp is None else xp
    Y, axis = cache
    dX = dY - _weighted_sums(dY, Y, axis, xp)
    dX *= Y
    return dX
