"""Helpers for testing layers on any backend: a finite-difference gradient check and ``assert_close``.

Anyone who writes a layer can use them::

    from anyml.testing import assert_close, gradcheck
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from anyml.backend import Array, Backend, dtype_name, namespace_of, to_numpy

__all__ = ["assert_close", "default_tolerances", "gradcheck", "numerical_gradient"]


_TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}


def default_tolerances(dtype_name: str) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results computed in ``dtype_name`` against a float64 reference."""
    return _TOLERANCES.get(dtype_name, _TOLERANCES["float32"])


def _dtype_name(x: Array) -> str:
    return dtype_name(x.dtype if hasattr(x, "dtype") else to_numpy(x).dtype)


def assert_close(actual: Array, desired: Any, *, rtol: float | None = None, atol: float | None = None,
                 backend: Backend | None = None, dtype: Any = None, err_msg: str = "") -> None:
    """Assert that ``actual`` equals ``desired`` within tolerance, on the host.

    Parameters
    ----------
    actual : array
        The result under test, of any backend.
    desired : array_like
        The reference, of any backend or on the host.
    rtol, atol : float, optional
        Tolerances; by default they depend on ``actual``'s dtype (float32: 1e-4 and 1e-5, float64:
        1e-10 and 1e-12).
    backend : Backend, optional
        When given, ``actual`` must be an array of this backend's library and device, and of its
        default float dtype unless ``dtype`` says otherwise.
    dtype : dtype, optional
        The dtype ``actual`` must have.

    Raises
    ------
    AssertionError
        With a message that says which of namespace, device, dtype, shape or values differ.
    """
    prefix = f"{err_msg}: " if err_msg else ""
    if backend is not None:
        if not backend.owns(actual):
            where = getattr(actual, "device", "?")
            msg = (f"{prefix}expected an array of {backend!r}, got {type(actual).__module__}."
                   f"{type(actual).__qualname__} on device {where!r}")
            raise AssertionError(msg)
        if namespace_of(actual) is not backend.xp:
            msg = f"{prefix}expected namespace {backend.xp.__name__}, got {namespace_of(actual).__name__}"
            raise AssertionError(msg)
        if dtype is None:
            dtype = backend.dtype
    if dtype is not None and actual.dtype != dtype:
        msg = f"{prefix}expected dtype {dtype}, got {actual.dtype}"
        raise AssertionError(msg)
    default_rtol, default_atol = default_tolerances(_dtype_name(actual))
    np.testing.assert_allclose(
        to_numpy(actual), to_numpy(desired),
        rtol=default_rtol if rtol is None else rtol,
        atol=default_atol if atol is None else atol,
        err_msg=err_msg,
    )


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                       eps: float = 1e-6) -> np.ndarray:
    r"""Central finite differences of a scalar function of a host array.

    .. math::

        \frac{\partial f}{\partial x_i} \approx
        \frac{f(x + \epsilon e_i) - f(x - \epsilon e_i)}{2\epsilon}
    """
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.empty_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        up = f(x)
        flat[i] = orig - eps
        down = f(x)
        flat[i] = orig
        out[i] = (up - down) / (2 * eps)
    return grad


def gradcheck(layer: Any, inputs: Sequence[Array], *,
              forward: Callable[[Sequence[Array], bool], Array] | None = None,
              backward: Callable[[Array], Any] | None = None,
              check_inputs: Sequence[int] | None = None, params: bool = True, seed: int = 0,
              eps: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    r"""Check a layer's backward pass against central finite differences, in float64.

    With a random upstream gradient :math:`G` (fixed by ``seed``), the scalar
    :math:`L = \sum_i G_i \, Y_i` is differentiated numerically wrt. every element of every input and
    every trainable parameter, and compared with what ``backward`` returns and accumulates.

    Parameters
    ----------
    layer : LayerBase
        A layer on a float64 backend.
    inputs : sequence of arrays
        The forward arguments, arrays of the layer's backend.
    forward : callable, optional
        ``forward(inputs, retain_derived) -> Y``; default ``layer.forward(*inputs, retain_derived=...)``.
    backward : callable, optional
        ``backward(dY) -> dX or sequence of dX``; default ``layer.backward``.
    check_inputs : sequence of int, optional
        Which inputs to differentiate (default: all floating ones).
    params : bool
        Whether to check the trainable parameters' gradients too.

    Raises
    ------
    ValueError
        If the layer's backend is not float64.
    AssertionError
        Naming the input or parameter whose gradient differs.
    """
    backend: Backend = layer.backend
    if backend.dtype_name != "float64":
        msg = f"gradcheck needs a float64 backend, got {backend!r}"
        raise ValueError(msg)
    if forward is None:
        def forward(xs: Sequence[Array], retain: bool) -> Array:
            return layer.forward(*xs, retain_derived=retain)
    if backward is None:
        backward = layer.backward
    inputs = list(inputs)
    if check_inputs is None:
        check_inputs = [i for i, x in enumerate(inputs)
                        if backend.xp.isdtype(x.dtype, "real floating")]

    layer.flush_gradients()
    Y = forward(inputs, True)
    G = np.random.default_rng(seed).standard_normal(tuple(Y.shape))
    grads = backward(backend.asarray(G))
    grads = list(grads) if isinstance(grads, list | tuple) else [grads]

    def loss(xs: Sequence[Array]) -> float:
        return float(np.sum(to_numpy(forward(xs, False)) * G))

    for i in check_inputs:
        def f_input(host: np.ndarray, i: int = i) -> float:
            xs = list(inputs)
            xs[i] = backend.asarray(host)
            return loss(xs)

        expected = numerical_gradient(f_input, to_numpy(inputs[i]), eps)
        np.testing.assert_allclose(to_numpy(grads[i]), expected, rtol=rtol, atol=atol,
                                   err_msg=f"{type(layer).__name__}: gradient of input {i}")
    if not params:
        return
    analytic = {name: to_numpy(g).copy() for name, g in layer.gradients.items()}
    for name in analytic:
        original = layer.parameters[name]

        def f_param(host: np.ndarray, name: str = name) -> float:
            layer.parameters[name] = backend.asarray(host)
            return loss(inputs)

        try:
            expected = numerical_gradient(f_param, to_numpy(original), eps)
        finally:
            layer.parameters[name] = original
        np.testing.assert_allclose(analytic[name], expected, rtol=rtol, atol=atol,
                                   err_msg=f"{type(layer).__name__}: gradient of parameter {name!r}")
