"""CuPy's own kernels behind anyml's pure functions, for arrays of the cupy backend.

Registered on :class:`~anyml.backend._cupy.CupyBackend` under the names of the pure functions of
:mod:`anyml.functional` they replace (see "Native fast paths" in :mod:`anyml.backend`):

* ``erf`` and ``erfc``: ``cupyx.scipy.special.erf`` / ``erfc``, one CUDA kernel each, where the pure
  path evaluates a series and a continued fraction in a dozen elementwise passes;
* batch and layer normalization (``batchnorm_forward``/``_backward``, ``layernorm_forward``/
  ``_backward``): CuPy reductions for the statistics and ``cupy.fuse`` kernels for the scale and
  shift and for the input gradient (one kernel each where the pure path makes three to five passes).
* ``sgd_step``, ``adagrad_step``, ``rmsprop_step`` and ``adam_step`` (:mod:`anyml.optimizers`) and
  ``lstm_cell_update`` (:mod:`anyml.functional.recurrent`): one fused ``cupy.ElementwiseKernel``
  each (:data:`KERNEL_SOURCES`), where the pure path launches four to thirteen kernels.

They run only where a CUDA device is; elsewhere the emulated-device tests exercise the pure path they
replace, and ``tests/backend/test_cupy_fast.py`` checks the wrappers against the pure functions with
stand-ins for ``cupyx``, ``cupy.fuse`` and ``cupy.ElementwiseKernel``. Not yet verified on a GPU.
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


# ----------------------------------------------------------------------------- normalization
# Batch and layer normalization with their elementwise passes fused by ``cupy.fuse`` (one kernel
# each for the scale and shift, and for the input gradient) and the statistics by CuPy's own
# reductions (no folded layout: that is a NumPy broadcasting trick). The caches are the pure path's
# ``NormCache``, so either backward takes either forward's cache.
def _fuse(fn: Any) -> Any:
    """``cupy.fuse(fn)``, made once per function (the first call compiles the kernel)."""
    fused = _FUSED.get(fn)
    if fused is None:
        import cupy

        fused = _FUSED[fn] = cupy.fuse(kernel_name=f"anyml_{fn.__name__.strip('_')}")(fn)
    return fused


_FUSED: dict[Any, Any] = {}


def _scale_shift(centred: Any, inv_std: Any, scaler: Any, intercept: Any) -> Any:
    return centred * inv_std * scaler + intercept


def _norm_grad(dY: Any, centred: Any, gain: Any, a: Any, c: Any, inv_std: Any) -> Any:
    return (dY * gain - centred * a - c) * inv_std


def _usable(*arrays: Any) -> bool:
    return all(x.dtype.kind == "f" and x.size > 0 for x in arrays)


@register("layernorm_forward")
def layernorm_forward(X: Any, scaler: Any, intercept: Any, epsilon: float = 1e-5,
                      xp: Any = None) -> Any:
    """Layer normalization with the statistics by CuPy reductions and the scale and shift fused
    into one kernel (see :func:`anyml.functional.norm.layernorm_forward`)."""
    from anyml.functional.norm import NormCache

    if X.ndim < 2 or not _usable(X, scaler, intercept):
        return NotImplemented
    n_ex = int(X.shape[0])
    X2 = X.reshape(n_ex, -1)
    mu = X2.mean(axis=1, keepdims=True)
    centred = X2 - mu
    sigma2 = (centred * centred).mean(axis=1, keepdims=True)
    inv_std = (sigma2 + epsilon) ** -0.5
    Y = _fuse(_scale_shift)(centred, inv_std, scaler.reshape(-1), intercept.reshape(-1))
    stat_shape = (n_ex,) + (1,) * (X.ndim - 1)
    cache = NormCache(centred.reshape(X.shape), scaler, inv_std.reshape(stat_shape),
                      mu.reshape(stat_shape), sigma2.reshape(stat_shape), True)
    return Y.reshape(X.shape), cache


@register("layernorm_backward")
def layernorm_backward(dY: Any, cache: Any, xp: Any = None, *, consume_cache: bool = False) -> Any:
    """The gradients of layer normalization, :math:`\\partial L / \\partial X` in one fused kernel
    (see :func:`anyml.functional.norm.layernorm_backward`)."""
    if type(cache).__name__ != "NormCache" or not _usable(dY):
        return NotImplemented
    n_ex = int(dY.shape[0])
    dY2, centred = dY.reshape(n_ex, -1), cache.centred.reshape(n_ex, -1)
    inv_std = cache.inv_std.reshape(n_ex, 1)
    gamma = cache.scaler.reshape(-1)
    t = dY2 * centred
    d_scaler = (inv_std * t).sum(axis=0).reshape(cache.scaler.shape)
    d_intercept = dY2.sum(axis=0).reshape(cache.scaler.shape)
    g_mean = (dY2 @ gamma).reshape(n_ex, 1) / gamma.size
    gc_mean = (t @ gamma).reshape(n_ex, 1) / gamma.size
    dX = _fuse(_norm_grad)(dY2, centred, gamma, inv_std * inv_std * gc_mean, g_mean, inv_std)
    return dX.reshape(dY.shape), d_scaler, d_intercept


@register("batchnorm_forward")
def batchnorm_forward(X: Any, scaler: Any, intercept: Any, epsilon: float = 1e-5,
                      running_mean: Any = None, running_var: Any = None, xp: Any = None,
                      reduce: Any = None) -> Any:
    """Batch normalization with the statistics by CuPy reductions over every axis but the last and
    the scale and shift fused into one kernel (see
    :func:`anyml.functional.norm.batchnorm_forward`); synchronized statistics (``reduce``) and
    running statistics take the pure path."""
    from anyml.functional.norm import NormCache

    if (reduce is not None or running_mean is not None or running_var is not None
            or not _usable(X, scaler, intercept)):
        return NotImplemented
    n_ch = int(X.shape[-1])
    X2 = X.reshape(-1, n_ch)
    mu = X2.mean(axis=0)
    centred = X2 - mu
    sigma2 = (centred * centred).mean(axis=0)
    inv_std = (sigma2 + epsilon) ** -0.5
    Y = _fuse(_scale_shift)(centred, inv_std, scaler, intercept)
    stat_shape = (1,) * (X.ndim - 1) + (n_ch,)
    cache = NormCache(centred.reshape(X.shape), scaler, inv_std.reshape(stat_shape),
                      mu.reshape(stat_shape), sigma2.reshape(stat_shape), True)
    return Y.reshape(X.shape), cache


@register("batchnorm_backward")
def batchnorm_backward(dY: Any, cache: Any, xp: Any = None, *, consume_cache: bool = False) -> Any:
    """The gradients of batch normalization, :math:`\\partial L / \\partial X` in one fused kernel
    (see :func:`anyml.functional.norm.batchnorm_backward`); a cache of synchronized or running
    statistics takes the pure path."""
    if (type(cache).__name__ != "NormCache" or not cache.batch_stats or cache.reduce is not None
            or not _usable(dY)):
        return NotImplemented
    n_ch = int(dY.shape[-1])
    dY2, centred = dY.reshape(-1, n_ch), cache.centred.reshape(-1, n_ch)
    n = int(dY2.shape[0])
    inv_std = cache.inv_std.reshape(n_ch)
    d_scaler = (dY2 * centred).sum(axis=0) * inv_std
    d_intercept = dY2.sum(axis=0)
    # dX = gamma * inv_std * (dY - mean(dY) - X_hat * mean(dY * X_hat))
    #    = (dY * gamma - centred * a - c) * inv_std
    a = cache.scaler * inv_std * d_scaler / n
    c = cache.scaler * d_intercept / n
    dX = _fuse(_norm_grad)(dY2, centred, cache.scaler, a, c, inv_std)
    return dX.reshape(dY.shape), d_scaler, d_intercept


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
