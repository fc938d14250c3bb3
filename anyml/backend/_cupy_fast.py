"""CuPy's own kernels behind anyml's pure functions, for arrays of the cupy backend.

Registered on :class:`~anyml.backend._cupy.CupyBackend` under the names of the pure functions of
:mod:`anyml.functional` they replace (see "Native fast paths" in :mod:`anyml.backend`):

* ``erf`` and ``erfc``: ``cupyx.scipy.special.erf`` / ``erfc``, one CUDA kernel each, where the pure
  path evaluates a series and a continued fraction in a dozen elementwise passes.
* ``sgd_step``, ``adagrad_step``, ``rmsprop_step`` and ``adam_step`` (:mod:`anyml.optimizers`) and
  ``lstm_cell_update`` (:mod:`anyml.functional.recurrent`): one fused ``cupy.ElementwiseKernel``
  each (:data:`KERNEL_SOURCES`), where the pure path launches four to thirteen kernels.

They run only where a CUDA device is; elsewhere the emulated-device tests exercise the pure path they
replace, and ``tests/backend/test_cupy_fast.py`` checks the wrappers against the pure functions with
a stand-in for ``cupyx``. Not yet verified on a GPU.
"""

from __future__ import annotations

import math
from typing import Any

from anyml.backend._cupy import CupyBackend

__all__: list[str] = []

register = CupyBackend.register_fast_path


def _special() -> Any:
    import cupyx.scipy.special

    return cupyx.scipy.special


@register("erf")
def erf(x: Any, xp: Any = None) -> Any:
    """``cupyx.scipy.special.erf`` for real floating-point ``x`` (same dtype and device)."""
    if x.dtype.kind != "f":
        return NotImplemented
    return _special().erf(x)


@register("erfc")
def erfc(x: Any, xp: Any = None) -> Any:
    """``cupyx.scipy.special.erfc`` for real floating-point ``x`` (same dtype and device)."""
    if x.dtype.kind != "f":
        return NotImplemented
    return _special().erfc(x)


# ------------------------------------------------------------------------------ fused elementwise
# One ``cupy.ElementwiseKernel`` launch each, where the pure path launches four to thirteen kernels
# and makes as many temporaries. They compute in the arrays' own dtype (``T``: the Python scalars
# take it too), with the pure path's formulas. Not yet verified on a GPU: on the CPU,
# tests/backend/test_cupy_fast.py runs them through a stand-in ``ElementwiseKernel`` that evaluates
# the same operation text with NumPy, and the emulated-device tests cover the pure paths they replace.
_KERNELS: dict[str, Any] = {}

#: ``name -> (in_params, out_params, operation)`` of every fused kernel.
KERNEL_SOURCES: dict[str, tuple[str, str, str]] = {
    "anyml_sgd": (
        "T param, T grad, T lr", "T new_param",
        "new_param = param - grad * lr"),
    "anyml_sgd_momentum": (
        "T param, T grad, T update, T lr, T momentum", "T new_param, T new_update",
        "new_update = update * momentum + grad * lr; new_param = param - new_update"),
    "anyml_adagrad": (
        "T param, T grad, T sum_sq, T lr, T eps", "T new_param, T new_sum_sq",
        "new_sum_sq = grad * grad + sum_sq; "
        "new_param = param - grad * lr / (sqrt(new_sum_sq) + eps)"),
    "anyml_rmsprop": (
        "T param, T grad, T mean_sq, T lr, T decay, T keep, T eps", "T new_param, T new_mean_sq",
        "new_mean_sq = mean_sq * decay + grad * grad * keep; "
        "new_param = param - grad * lr / (sqrt(new_mean_sq) + eps)"),
    "anyml_adam": (
        "T param, T grad, T mean, T var, T decay1, T keep1, T decay2, T keep2, T eps_hat, "
        "T step_size, T shrink", "T new_param, T new_mean, T new_var",
        "new_mean = mean * decay1 + grad * keep1; "
        "new_var = var * decay2 + grad * grad * keep2; "
        "new_param = param * shrink - new_mean * step_size / (sqrt(new_var) + eps_hat)"),
    "anyml_lstm_cell": (
        "T tf, T tu, T to, T tc, T c_prev", "T c, T a",
        "T f = (T)0.5 + (T)0.5 * tf; T u = (T)0.5 + (T)0.5 * tu; T o = (T)0.5 + (T)0.5 * to; "
        "c = f * c_prev + u * tc; a = o * tanh(c)"),
}


def _kernel(name: str) -> Any:
    """The compiled ``cupy.ElementwiseKernel`` ``name`` of :data:`KERNEL_SOURCES`, made once."""
    kernel = _KERNELS.get(name)
    if kernel is None:
        import cupy

        in_params, out_params, operation = KERNEL_SOURCES[name]
        kernel = _KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, operation, name)
    return kernel


def _floating(*arrays: Any) -> bool:
    return all(a is None or a.dtype.kind == "f" for a in arrays)


@register("sgd_step")
def sgd_step(param: Any, grad: Any, update: Any, lr: float, momentum: float) -> Any:
    """:func:`anyml.optimizers.sgd_step` in one fused kernel (not yet verified on a GPU)."""
    if not _floating(param, grad, update):
        return NotImplemented
    if update is None:
        return _kernel("anyml_sgd")(param, grad, lr), None
    return _kernel("anyml_sgd_momentum")(param, grad, update, lr, momentum)


@register("adagrad_step")
def adagrad_step(param: Any, grad: Any, sum_sq: Any, lr: float, eps: float) -> Any:
    """:func:`anyml.optimizers.adagrad_step` in one fused kernel (not yet verified on a GPU)."""
    if not _floating(param, grad, sum_sq):
        return NotImplemented
    return _kernel("anyml_adagrad")(param, grad, sum_sq, lr, eps)


@register("rmsprop_step")
def rmsprop_step(param: Any, grad: Any, mean_sq: Any, lr: float, decay: float, eps: float) -> Any:
    """:func:`anyml.optimizers.rmsprop_step` in one fused kernel (not yet verified on a GPU)."""
    if not _floating(param, grad, mean_sq):
        return NotImplemented
    return _kernel("anyml_rmsprop")(param, grad, mean_sq, lr, decay, 1.0 - decay, eps)


@register("adam_step")
def adam_step(param: Any, grad: Any, mean: Any, var: Any, lr: float, decay1: float,
              decay2: float, eps: float, t: int, weight_decay: float = 0.0) -> Any:
    """:func:`anyml.optimizers.adam_step` (and AdamW) in one fused kernel, the bias corrections
    folded into host scalars as in the pure path (not yet verified on a GPU)."""
    if not _floating(param, grad, mean, var):
        return NotImplemented
    root_bc2 = math.sqrt(1.0 - decay2**t)
    step_size = lr * root_bc2 / (1.0 - decay1**t)
    shrink = 1.0 - lr * weight_decay if weight_decay else 1.0
    return _kernel("anyml_adam")(param, grad, mean, var, decay1, 1.0 - decay1, decay2,
                                 1.0 - decay2, eps * root_bc2, step_size, shrink)


@register("lstm_cell_update")
def lstm_cell_update(T: Any, C_prev: Any, xp: Any = None) -> Any:
    """:func:`anyml.functional.recurrent.lstm_cell_update` in one fused kernel on the four gate
    blocks of ``T`` (views, no copy); not yet verified on a GPU."""
    if not _floating(T, C_prev):
        return NotImplemented
    n = int(T.shape[1]) // 4
    return _kernel("anyml_lstm_cell")(T[:, :n], T[:, n:2 * n], T[:, 2 * n:3 * n], T[:, 3 * n:],
                                      C_prev)
