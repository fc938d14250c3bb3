r"""Activation kernels that the recurrent kernels use, without the activation classes above them.

:mod:`anyml.functional` sits below :mod:`anyml.activations` (imports go backend -> functional ->
layers), so the recurrent kernels never import the activation classes. They recognise the
activations that can be differentiated from their own output by a class attribute,
``output_derivative``, that :class:`~anyml.activations.Tanh`, :class:`~anyml.activations.Sigmoid`
and :class:`~anyml.activations.Identity` set in their own class body (a subclass that does not set it
again is treated as any other activation: it may have changed ``fn``):

* ``"tanh"``: :math:`f'(z) = 1 - f(z)^2`;
* ``"sigmoid"``: :math:`f'(z) = f(z)(1 - f(z))`;
* ``"identity"``: :math:`f'(z) = 1`.

Anything else is applied through its ``fn`` and differentiated through its ``backward(z, dy)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyml.backend import Array

__all__ = ["activation_backward", "activation_forward", "output_derivative", "sigmoid"]


def output_derivative(act: Any) -> str | None:
    """``"tanh"``, ``"sigmoid"``, ``"identity"`` or ``None`` (see the module docstring)."""
    kind = vars(type(act)).get("output_derivative")
    return kind if isinstance(kind, str) else None


def sigmoid(z: Array, xp: Any) -> Array:
    r"""The logistic sigmoid as :math:`(1 + \tanh(z / 2)) / 2`: no exponential, so no overflow,
    and four elementwise kernels."""
    s = xp.tanh(z * 0.5)
    s *= 0.5
    s += 0.5
    return s


def activation_forward(act: Any, xp: Any) -> Callable[[Array], Array]:
    """A function ``z -> f(z)``; the sigmoid is taken as :func:`sigmoid`."""
    if output_derivative(act) == "sigmoid":
        return lambda z: sigmoid(z, xp)
    fn: Callable[[Array], Array] = act.fn
    return fn


def activation_backward(act: Any) -> Callable[[Array | None, Array, Array], Array]:
    """A function ``(z, y, dy) -> dy * f'(z)`` that uses the output ``y = f(z)`` where it can."""
    kind = output_derivative(act)
    if kind == "tanh":
        return lambda z, y, dy: dy * (1.0 - y * y)
    if kind == "sigmoid":
        return lambda z, y, dy: dy * (y - y * y)
    if kind == "identity":
        return lambda z, y, dy: dy
    return lambda z, y, dy: act.backward(z, dy)
