"""The softmax function along one axis and its gradient."""

from __future__ import annotations

from typing import Any

from anyml.backend import namespace_of

__all__ = ["softmax_backward", "softmax_forward"]

Array = Any


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
    E = xp.exp(X - xp.max(X, axis=axis, keepdims=True))
    Y = E / xp.sum(E, axis=axis, keepdims=True)
    return Y, (Y, axis)


def softmax_backward(dY: Array, cache: tuple[Array, int], xp: Any = None) -> Array:
    r"""The vector-Jacobian product of the softmax.

    With :math:`\partial y_i / \partial x_j = y_i (\delta_{ij} - y_j)`:

    .. math:: \frac{\partial L}{\partial x} = y \odot \Big(\frac{\partial L}{\partial y}
              - \sum_k \frac{\partial L}{\partial y_k} y_k\Big)
    """
    xp = namespace_of(dY) if xp is None else xp
    Y, axis = cache
    return Y * (dY - xp.sum(dY * Y, axis=axis, keepdims=True))
