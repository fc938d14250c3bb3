"""PyTorch's own kernels behind anyml's pure functions, for arrays of the torch backend.

Each function here is registered on :class:`~anyml.backend._torch.TorchBackend` under the name of the
pure function of :mod:`anyml.functional` it replaces (see "Native fast paths" in
:mod:`anyml.backend`). It validates and resolves its arguments with the pure module's own helpers, so
that bad input raises the same error, and then runs the operation in PyTorch: convolutions,
transposed convolutions and pooling on channels-last tensors (anyml's ``(n, rows, cols, ch)`` arrays
are exactly PyTorch's channels-last memory format once their axes are permuted, so no copy is made),
batch and layer normalization through PyTorch's ``native_batch_norm`` / ``native_layer_norm``
kernels and their backward kernels (called directly: no autograd graph), and the softmax's
vector-Jacobian product through PyTorch's softmax backward kernel.

A convolution or pooling forward pass records its PyTorch autograd graph in a :class:`TorchGraph`
cache, and the matching backward pass asks autograd for the gradients (one ``torch.autograd.grad``
call, which runs PyTorch's fused backward kernels); a normalization keeps what its backward kernel
takes in its own cache. A backward given a cache of another kind (a forward that took the pure
path) hands the call back with ``NotImplemented``, and so does a forward whose arguments PyTorch
does not cover the way anyml defines them (for example synchronized batch normalization). The
results equal the pure path's up to rounding; ``tests/backend`` checks each one against the pure
function on the torch backend, values and gradients.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from anyml.backend._base import Array
from anyml.backend._torch import TorchBackend

__all__ = ["TorchBatchNormCache", "TorchGraph", "TorchLayerNormCache", "TorchPoolCache"]

register = TorchBackend.register_fast_path


class TorchGraph(NamedTuple):
    """The cache of a native forward pass: its output inside PyTorch's autograd graph and the leaves
    (the inputs, detached and marked as requiring gradients) the backward pass differentiates."""

    out: Any
    leaves: tuple[Any, ...]


def _torch() -> Any:
    import torch

    return torch


def _usable(*arrays: Any) -> bool:
    """Whether autograd can record on these tensors (not in inference mode, floating point) and
    PyTorch's kernels take them: zero-size arrays go to the pure path, which defines (or refuses) the
    empty cases the same way on every backend."""
    torch = _torch()
    if torch.is_inference_mode_enabled():
        return False
    return all(a is None or (a.is_floating_point() and not a.is_inference() and a.numel() > 0)
               for a in arrays)


def _record(fn: Any, *inputs: Any) -> tuple[Any, TorchGraph]:
    """Run ``fn`` on detached copies of ``inputs`` with autograd on (``None`` inputs are left out:
    they come last)."""
    torch = _torch()
    leaves = tuple(a.detach().requires_grad_(True) for a in inputs if a is not None)
    with torch.enable_grad():
        out = fn(*leaves)
    return out.detach(), TorchGraph(out, leaves)


def _gradients(graph: TorchGraph, dout: Any) -> tuple[Any, ...]:
    """The gradients of ``graph.out`` with upstream ``dout`` wrt. every leaf, in order."""
    torch = _torch()
    with torch.enable_grad():
        # the graph is kept: a second backward from the same cache works, as on the pure path
        return torch.autograd.grad(graph.out, graph.leaves, dout, retain_graph=True)


def _nchw(x: Any) -> Any:
    """A channels-last ``(n, rows, cols, ch)`` tensor as PyTorch's NCHW view (channels-last memory)."""
    return x.permute(0, 3, 1, 2)


def _nhwc(z: Any) -> Any:
    """The inverse of :func:`_nchw`, contiguous."""
    return z.permute(0, 2, 3, 1).contiguous()


def _act(z: Any, act: str | None) -> Any:
    """``z`` through the activation a convolution was asked to apply (see ``ACTIVATIONS``)."""
    return z if act is None else _torch().relu(z)


def _padding(x: Any, pads: tuple[int, int, int, int], value: float = 0.0) -> tuple[Any, Any]:
    """``(x, padding)`` for a PyTorch call: a symmetric padding is passed on, an asymmetric one (or a
    non-zero fill) is applied with ``F.pad``."""
    top, bottom, left, right = pads
    if top == bottom and left == right and value == 0.0:
        return x, (top, left)
    F = _torch().nn.functional
    return F.pad(x, (left, right, top, bottom), value=value), 0


# ------------------------------------------------------------------------------ convolutions
@register("conv2d_forward")
def conv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                   dilation: int = 0, xp: Any = None, *, max_chunk: int | None = None,
                   workspace: dict | None = None, act: str | None = None) -> Any:
    """``F.conv2d`` on the channels-last view, then ``torch.relu`` for ``act="relu"`` (see
    :func:`anyml.functional.conv.conv2d_forward`). The input's NCHW view is channels-last in
    memory, so PyTorch computes a channels-last output, whose NHWC view is contiguous: no copy."""
    from anyml.functional import conv

    if not _usable(X, W, b):
        return NotImplemented
    conv._check_conv2d_inputs(X, W, b, act, "conv2d")
    kernel = (int(W.shape[0]), int(W.shape[1]))
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    strides, pads, _ = conv.memo(conv._conv2d_geometry, pad, stride, in_shape, kernel, dilation)
    F = _torch().nn.functional

    def fn(x: Any, w: Any, *bias: Any) -> Any:
        x, padding = _padding(_nchw(x), pads)
        w = w.permute(3, 2, 0, 1).contiguous()
        z = F.conv2d(x, w, bias[0].reshape(-1) if bias else None, stride=strides, padding=padding,
                     dilation=dilation + 1)
        return _nhwc(_act(z, act))

    return _record(fn, X, W, b)


@register("conv2d_backward")
def conv2d_backward(dZ: Array, cache: Any, xp: Any = None, workspace: dict | None = None) -> Any:
    """The gradients of :func:`conv2d_forward` by PyTorch's convolution backward."""
    if not isinstance(cache, TorchGraph):
        return NotImplemented
    grads = _gradients(cache, dZ)
    db = grads[2] if len(grads) == 3 else dZ.sum(dim=(0, 1, 2))
    return grads[0], grads[1], db.reshape(-1)


@register("deconv2d_forward")
def deconv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                     xp: Any = None, *, max_chunk: int | None = None, act: str | None = None) -> Any:
    """``F.conv_transpose2d`` on the channels-last view, then the crop of ``pad``
    (see :func:`anyml.functional.conv.deconv2d_forward`)."""
    from anyml.functional import conv
    from anyml.functional._padding import as_pair

    if not _usable(X, W, b):
        return NotImplemented
    conv._check_conv2d_inputs(X, W, b, act, "deconv2d")
    kernel = (int(W.shape[0]), int(W.shape[1]))
    strides = as_pair(stride, "stride", "deconv2d")
    top, bottom, left, right = conv.resolve_deconv_pads(pad, (int(X.shape[1]), int(X.shape[2])),
                                                        kernel, strides)
    F = _torch().nn.functional

    def fn(x: Any, w: Any, *bias: Any) -> Any:
        symmetric = top == bottom and left == right
        w = w.permute(2, 3, 0, 1).contiguous()  # (in_ch, out_ch, rows, cols)
        z = F.conv_transpose2d(_nchw(x), w, bias[0].reshape(-1) if bias else None, stride=strides,
                               padding=(top, left) if symmetric else 0)
        if not symmetric:
            z = z[:, :, top:z.shape[2] - bottom, left:z.shape[3] - right]
        return _nhwc(_act(z, act))

    return _record(fn, X, W, b)


@register("deconv2d_backward")
def deconv2d_backward(dZ: Array, cache: Any, xp: Any = None, workspace: dict | None = None) -> Any:
    """The gradients of :func:`deconv2d_forward` by PyTorch's transposed-convolution backward."""
    return conv2d_backward(dZ, cache, xp, workspace)


# ----------------------------------------------------------------------------------- pooling
class TorchPoolCache(NamedTuple):
    """The cache of a native pooling: PyTorch's own pooling backward kernels run on it directly
    (no autograd graph: for a small layer the engine costs more than the arithmetic)."""

    mode: str
    x: Any
    indices: Any
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]


@register("pool2d_forward")
def pool2d_forward(X: Array, kernel_shape: Any, stride: Any = 1, pad: Any = 0, mode: str = "max",
                   xp: Any = None) -> Any:
    """``max_pool2d_with_indices`` / ``avg_pool2d`` on the channels-last view (max pooling pads with
    :math:`-\\infty`, average pooling with zeros that count in the mean, as the pure path does); the
    output's NHWC view is contiguous (PyTorch keeps the input's channels-last format)."""
    from anyml.functional import pool

    if mode not in pool.POOL_MODES or X.ndim != 4 or not _usable(X):
        return NotImplemented  # the pure path raises the error
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    kernel, strides, pads, _ = pool.memo(pool._pool2d_geometry, kernel_shape, stride, pad, in_shape)
    torch = _torch()
    x = _nchw(X.detach())
    if any(pads):  # PyTorch pads at most half a kernel itself: pad explicitly
        top, bottom, left, right = pads
        x = torch.nn.functional.pad(x, (left, right, top, bottom),
                                    value=-math.inf if mode == "max" else 0.0)
    if mode == "max":
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, kernel, strides)
    else:
        y, indices = torch.ops.aten.avg_pool2d(x, kernel, strides), None
    return _nhwc(y), TorchPoolCache(mode, x, indices, kernel, strides, pads)


@register("pool2d_backward")
def pool2d_backward(dY: Array, cache: Any, xp: Any = None) -> Any:
    """The gradient of :func:`pool2d_forward` by PyTorch's pooling backward kernels."""
    if not isinstance(cache, TorchPoolCache):
        return NotImplemented
    aten = _torch().ops.aten
    g = _nchw(dY)
    if cache.mode == "max":
        dx = aten.max_pool2d_with_indices_backward(g, cache.x, cache.kernel, cache.strides, (0, 0),
                                                   (1, 1), False, cache.indices)
    else:
        dx = aten.avg_pool2d_backward(g, cache.x, cache.kernel, cache.strides, (0, 0), False, True,
                                      None)
    if any(cache.pads):
        top, bottom, left, right = cache.pads
        dx = dx[:, :, top:dx.shape[2] - bottom, left:dx.shape[3] - right]
    return _nhwc(dx)


# ----------------------------------------------------------------------------- normalization
# Batch and layer normalization call PyTorch's kernels directly (``native_batch_norm``,
# ``native_layer_norm`` and their backward kernels), without recording an autograd graph: the
# statistics the forward kernel saves are all its backward needs, and skipping autograd's bookkeeping
# saves about as much as the kernels cost at moderate sizes.
class TorchBatchNormCache(NamedTuple):
    """The cache of a native batch normalization: the statistics used (as the pure ``NormCache``
    has them, for the running averages) and what PyTorch's backward kernel takes."""

    mean: Any
    var: Any
    X: Any
    scaler: Any
    saved: tuple[Any, Any, Any, Any]  # running mean and var (inference) or saved mean and inv std
    epsilon: float
    batch_stats: bool


class TorchLayerNormCache(NamedTuple):
    """The cache of a native layer normalization: the input, the parameters and the per-example
    mean and reciprocal standard deviation PyTorch's forward kernel saved."""

    X: Any
    scaler: Any
    intercept: Any
    mean: Any
    rstd: Any


def _takes(*arrays: Any) -> bool:
    """Whether PyTorch's kernels take these tensors as the pure path defines them: floating point,
    non-empty (zero-size arrays go to the pure path, which defines or refuses the empty cases the
    same way on every backend)."""
    return all(a.is_floating_point() and a.numel() > 0 for a in arrays)


@register("batchnorm_forward")
def batchnorm_forward(X: Array, scaler: Array, intercept: Array, epsilon: float = 1e-5,
                      running_mean: Array | None = None, running_var: Array | None = None,
                      xp: Any = None, reduce: Any = None) -> Any:
    """``native_batch_norm`` over every axis but the last (see
    :func:`anyml.functional.norm.batchnorm_forward`); the batch statistics come back through
    running buffers updated with momentum 1 (PyTorch keeps the unbiased variance there, which is
    rescaled to the biased one the pure path reports)."""
    torch = _torch()
    inference = running_mean is not None and running_var is not None
    if reduce is not None or X.ndim not in (2, 4) or not _takes(X, scaler, intercept):
        return NotImplemented
    n_ch = int(X.shape[-1])
    count = math.prod(X.shape) // max(n_ch, 1)
    if not inference and count < 2:
        return NotImplemented  # PyTorch refuses one value per channel; the pure path decides
    mean: Any
    var: Any
    if inference:
        mean, var = running_mean, running_var
    else:
        stats = torch.zeros((2, n_ch), dtype=X.dtype, device=X.device)
        mean, var = stats[0], stats[1]
    x = _nchw(X) if X.ndim == 4 else X
    g, b = scaler.reshape(-1), intercept.reshape(-1)
    y, save_mean, save_invstd = torch.native_batch_norm(x, g, b, mean, var, not inference, 1.0,
                                                        float(epsilon))
    Y = _nhwc(y) if X.ndim == 4 else y
    saved = (mean, var, None, None) if inference else (None, None, save_mean, save_invstd)
    if not inference:
        var.mul_((count - 1) / count)
    stat_shape = (1,) * (X.ndim - 1) + (n_ch,)
    return Y, TorchBatchNormCache(mean.reshape(stat_shape), var.reshape(stat_shape), X, scaler,
                                  saved, float(epsilon), not inference)


@register("batchnorm_backward")
def batchnorm_backward(dY: Array, cache: Any, xp: Any = None, *, consume_cache: bool = False) -> Any:
    """The gradients of :func:`batchnorm_forward` by PyTorch's batch-norm backward kernel."""
    if not isinstance(cache, TorchBatchNormCache):
        return NotImplemented
    X = cache.X
    four = X.ndim == 4
    x, dy = (_nchw(X), _nchw(dY)) if four else (X, dY)
    dx, d_scaler, d_intercept = _torch().ops.aten.native_batch_norm_backward(
        dy, x, cache.scaler.reshape(-1), *cache.saved, cache.batch_stats, cache.epsilon,
        [True, True, True])
    return (_nhwc(dx) if four else dx), d_scaler, d_intercept


@register("layernorm_forward")
def layernorm_forward(X: Array, scaler: Array, intercept: Array, epsilon: float = 1e-5,
                      xp: Any = None) -> Any:
    """``native_layer_norm`` over all the values of each example (see
    :func:`anyml.functional.norm.layernorm_forward`)."""
    if X.ndim < 2 or not _takes(X, scaler, intercept):
        return NotImplemented
    Y, mean, rstd = _torch().native_layer_norm(X, scaler.shape, scaler, intercept, float(epsilon))
    return Y, TorchLayerNormCache(X, scaler, intercept, mean, rstd)


@register("layernorm_backward")
def layernorm_backward(dY: Array, cache: Any, xp: Any = None, *, consume_cache: bool = False) -> Any:
    """The gradients of :func:`layernorm_forward` by PyTorch's layer-norm backward kernel."""
    if not isinstance(cache, TorchLayerNormCache):
        return NotImplemented
    return tuple(_torch().ops.aten.native_layer_norm_backward(
        dY, cache.X, cache.scaler.shape, cache.mean, cache.rstd, cache.scaler, cache.intercept,
        [True, True, True]))


# ---------------------------------------------------------------------------------- softmax
@register("softmax_forward")
def softmax_forward(X: Array, axis: int = -1, xp: Any = None) -> Any:
    """``torch.softmax``; the cache keeps the pure layout ``(Y, axis)``."""
    if not X.is_floating_point():
        return NotImplemented
    Y = _torch().softmax(X, dim=axis)
    return Y, (Y, axis)


@register("softmax_backward")
def softmax_backward(dY: Array, cache: tuple[Array, int], xp: Any = None) -> Any:
    """PyTorch's softmax backward kernel on the pure cache ``(Y, axis)``."""
    Y, axis = cache
    if not (Y.is_floating_point() and dY.dtype == Y.dtype and dY.shape == Y.shape):
        return NotImplemented
    return _torch()._softmax_backward_data(dY, Y, axis, Y.dtype)


@register("log_softmax")
def log_softmax(X: Array, axis: int = -1, xp: Any = None) -> Any:
    """``torch.log_softmax``."""
    if not X.is_floating_point():
        return NotImplemented
    return _torch().log_softmax(X, dim=axis)


# -------------------------------------------------------------------------------- embedding
@register("embedding_forward")
def embedding_forward(ids: Array, W: Array, pool: str | None = None, xp: Any = None) -> Any:
    """``F.embedding`` (one vector per id) or ``F.embedding_bag`` (sum or mean over each example's
    ids, one kernel without the ``(n_ex, n_in, n_out)`` intermediate) on a rectangular batch (see
    :func:`anyml.functional.embedding.embedding_forward`). The cache is the pure one: the backward
    is the pure scatter-add, which is PyTorch's ``index_add_`` on this backend."""
    from anyml.functional import embedding

    if (pool not in embedding.POOLS or ids.ndim != 2 or ids.is_floating_point()
            or not _takes(W) or W.ndim != 2 or ids.numel() == 0):
        return NotImplemented  # the pure path decides (and raises)
    F = _torch().nn.functional
    n_ex, n_in = (int(d) for d in ids.shape)
    Y = F.embedding(ids, W) if pool is None else F.embedding_bag(ids, W, mode=pool)
    cache = embedding.EmbeddingCache(ids.reshape(-1), None, None, (n_ex, n_in), pool,
                                     (int(W.shape[0]), int(W.shape[1])))
    return Y, cache
