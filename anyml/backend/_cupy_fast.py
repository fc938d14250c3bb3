"""CuPy's own kernels behind anyml's pure functions, for arrays of the cupy backend.

Registered on :class:`~anyml.backend._cupy.CupyBackend` under the names of the pure functions of
:mod:`anyml.functional` they replace (see "Native fast paths" in :mod:`anyml.backend`):

* ``erf`` and ``erfc``: ``cupyx.scipy.special.erf`` / ``erfc``, one CUDA kernel each, where the pure
  path evaluates a series and a continued fraction in a dozen elementwise passes;
* batch and layer normalization (``batchnorm_forward``/``_backward``, ``layernorm_forward``/
  ``_backward``): CuPy reductions for the statistics and ``cupy.fuse`` kernels for the scale and
  shift and for the input gradient (one kernel each where the pure path makes three to five passes).

They run only where a CUDA device is; elsewhere the emulated-device tests exercise the pure path they
replace, and ``tests/backend/test_cupy_fast.py`` checks the wrappers against the pure functions with
stand-ins for ``cupyx`` and ``cupy.fuse``. Not yet verified on a GPU.
"""

from __future__ import annotations

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
