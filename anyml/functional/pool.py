r"""2-D max and average pooling, channels last, with one strided slice per kernel offset.

The windows of a pooling layer are the same as a convolution's (see :mod:`anyml.functional.conv`), but
each output only reduces its own channel, so no column matrix is built: the forward pass folds the
``kernel_rows * kernel_cols`` strided views of the padded input with ``maximum`` or ``+``, and the
backward pass adds each view's share of the gradient back with a strided ``+=``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from anyml.backend import Array, namespace_of, replaceable
from anyml.functional._memo import memo
from anyml.functional._padding import Pad4, as_pair, conv_out_size, pad2d, resolve_pad2d

__all__ = ["POOL_MODES", "pool2d_backward", "pool2d_forward", "resolve_pool_pads"]

#: The pooling functions :func:`pool2d_forward` knows.
POOL_MODES = ("max", "average")


def resolve_pool_pads(pad: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                      stride: tuple[int, int], owner: str = "pool2d") -> Pad4:
    """Resolve ``pad`` like a convolution's and check that every window holds an input pixel.

    Each side's pad must be smaller than the kernel along that axis (``"same"`` always is), so that
    no window lies wholly in the padding.
    """
    pads = resolve_pad2d(pad, in_shape, kernel, stride, 0, owner=owner, same_rule="ceil")
    for side, value in zip(("top", "bottom", "left", "right"), pads, strict=True):
        k = kernel[0] if side in ("top", "bottom") else kernel[1]
        if value >= k:
            msg = (f"{owner}: the {side} pad ({value}) must be smaller than the kernel ({k}) so that "
                   f"every window covers an input pixel, got pad {pad!r} for kernel {kernel}")
            raise ValueError(msg)
    return pads


def _pool2d_geometry(kernel_shape: Any, stride: Any, pad: Any, in_shape: tuple[int, int]
                     ) -> tuple[tuple[int, int], tuple[int, int], Pad4, tuple[int, int]]:
    """The kernel, strides, resolved pads and output size of a pooling (memoized)."""
    kernel = as_pair(kernel_shape, "kernel_shape", "pool2d")
    strides = as_pair(stride, "stride", "pool2d")
    pads = resolve_pool_pads(pad, in_shape, kernel, strides)
    out_shape = (conv_out_size(in_shape[0], kernel[0], strides[0], pads[0] + pads[1]),
                 conv_out_size(in_shape[1], kernel[1], strides[1], pads[2] + pads[3]))
    return kernel, strides, pads, out_shape


#: ``(id(kernel_shape), id(stride), id(pad), in_shape) -> (kernel_shape, stride, pad, geometry)`` for
#: arguments of immutable kinds: a layer passes the same validated objects at every call.
_BY_IDENTITY: dict[tuple[int, int, int, tuple[int, int]], tuple[Any, Any, Any, Any]] = {}


def _immutable(value: Any) -> bool:
    """Whether ``value`` is an int, a str or a tuple of ints (so that the same object always has the
    same value)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(type(v) is int for v in value))


def _geometry(kernel_shape: Any, stride: Any, pad: Any, in_shape: tuple[int, int]
              ) -> tuple[tuple[int, int], tuple[int, int], Pad4, tuple[int, int]]:
    """:func:`_pool2d_geometry`, memoized, found first by the identity of its arguments: the key of
    :func:`~anyml.functional._memo.memo` takes a few microseconds to build, a batch-1 pooling about
    twenty in all. The entry holds the argument objects, so their ids stay theirs."""
    key = (id(kernel_shape), id(stride), id(pad), in_shape)
    entry = _BY_IDENTITY.get(key)
    if entry is not None and entry[0] is kernel_shape and entry[1] is stride and entry[2] is pad:
        return entry[3]  # type: ignore[no-any-return]
    geometry = memo(_pool2d_geometry, kernel_shape, stride, pad, in_shape)
    if _immutable(kernel_shape) and _immutable(stride) and _immutable(pad):
        if len(_BY_IDENTITY) >= 256:
            _BY_IDENTITY.clear()
        _BY_IDENTITY[key] = (kernel_shape, stride, pad, geometry)
    return geometry


@lru_cache(maxsize=256)
def _views(kernel: tuple[int, int], stride: tuple[int, int],
           out_shape: tuple[int, int]) -> tuple[tuple[slice, slice], ...]:
    (kr, kc), (sr, sc), (orows, ocols) = kernel, stride, out_shape
    return tuple((slice(i, i + sr * (orows - 1) + 1, sr), slice(j, j + sc * (ocols - 1) + 1, sc))
                 for i in range(kr) for j in range(kc))


@replaceable
def pool2d_forward(X: Array, kernel_shape: Any, stride: Any = 1, pad: Any = 0, mode: str = "max",
                   xp: Any = None) -> tuple[Array, tuple[Any, ...]]:
    r"""Pool each channel of ``X`` over ``kernel_shape`` windows.

    .. math::

        Y[n, r, c, k] = \max_{i, j} X_p[n, r s_r + i, c s_c + j, k] \quad \text{or} \quad
        \frac{1}{k_r k_c} \sum_{i, j} X_p[n, r s_r + i, c s_c + j, k]

    Parameters
    ----------
    X : array of shape (n_ex, in_rows, in_cols, in_ch)
    kernel_shape, stride : int or pair of int
    pad : int, tuple or "same"
        Resolved by :func:`resolve_pool_pads`. Max pooling pads with :math:`-\infty` (a padded pixel
        never wins); average pooling pads with zeros and always divides by ``k_r * k_c``, so the
        padding counts in the mean (``count_include_pad=True`` in PyTorch's terms).
    mode : {"max", "average"}

    Returns
    -------
    Y : array of shape (n_ex, out_rows, out_cols, in_ch)
    cache : tuple
        For :func:`pool2d_backward`.
    """
    xp = namespace_of(X) if xp is None else xp
    if mode not in POOL_MODES:
        msg = f"pool2d: unknown mode {mode!r}; expected one of {POOL_MODES}"
        raise ValueError(msg)
    if X.ndim != 4:
        msg = f"pool2d: expected X of shape (n_ex, in_rows, in_cols, in_ch), got {tuple(X.shape)}"
        raise ValueError(msg)
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    kernel, strides, pads, out_shape = _geometry(kernel_shape, stride, pad, in_shape)
    Xp = pad2d(X, pads, xp, value=-math.inf if mode == "max" else 0.0)
    views = _views(kernel, strides, out_shape)
    rs, cs = views[0]
    if mode == "max" and kernel == strides and len(views) > 1:
        Y = _tiled_max(Xp, kernel, out_shape, xp)
        saved = Xp
    elif mode == "max":
        Y = Xp[:, rs, cs, :]
        for rs, cs in views[1:]:
            Y = xp.maximum(Y, Xp[:, rs, cs, :])
        if len(views) == 1:
            Y = xp.asarray(Y, copy=True)
        saved = Xp
    else:
        Y = xp.asarray(Xp[:, rs, cs, :], copy=True)
        for rs, cs in views[1:]:
            Y += Xp[:, rs, cs, :]
        Y *= 1.0 / len(views)
        saved = None
    cache = (mode, saved, Y, tuple(Xp.shape), pads, kernel, strides, out_shape)
    return Y, cache


def _tiled_max(Xp: Array, kernel: tuple[int, int], out_shape: tuple[int, int], xp: Any) -> Array:
    """Max pooling over windows that tile ``Xp`` (stride = kernel), in two stages: the maximum over
    the window's rows of whole image rows (long contiguous runs), then over its columns.

    ``kernel_rows - 1 + kernel_cols - 1`` operations instead of ``kernel_rows * kernel_cols - 1``,
    the first ones on contiguous memory; the maximum is exact, so the result is the same.
    """
    (kr, kc), (orows, ocols) = kernel, out_shape
    n, rows, cols, ch = (int(v) for v in Xp.shape)
    if (rows, cols) != (orows * kr, ocols * kc):
        Xp = Xp[:, :orows * kr, :ocols * kc, :]
    Xr = xp.reshape(Xp, (n * orows, kr, ocols * kc * ch))  # row i of each window: [:, i, :]
    U = Xr[:, 0, :]
    for i in range(1, kr):
        U = xp.maximum(U, Xr[:, i, :])
    U = xp.reshape(U, (n * orows, ocols, kc, ch))  # column j of each window: [:, :, j, :]
    Y = U[:, :, 0, :]
    for j in range(1, kc):
        Y = xp.maximum(Y, U[:, :, j, :])
    return xp.reshape(Y, (n, orows, ocols, ch))


@replaceable
def pool2d_backward(dY: Array, cache: tuple[Any, ...], xp: Any = None) -> Array:
    r"""Gradient of :func:`pool2d_forward` wrt. ``X``.

    Max pooling routes each window's gradient to its maximum, the first one in row-major window order
    on ties (as PyTorch does); average pooling spreads it evenly:

    .. math::

        \frac{\partial L}{\partial X_p[n, r s_r + i, c s_c + j, k]} \mathrel{+}=
        \frac{\partial L}{\partial Y[n, r, c, k]} \cdot
        \begin{cases} [\,(i, j) = \operatorname{argmax}\,] & \text{max} \\
        1 / (k_r k_c) & \text{average} \end{cases}

    Returns
    -------
    dX : array of shape (n_ex, in_rows, in_cols, in_ch)
    """
    xp = namespace_of(dY) if xp is None else xp
    mode, Xp, Y, padded_shape, pads, kernel, strides, out_shape = cache
    views = _views(kernel, strides, out_shape)
    disjoint = kernel[0] <= strides[0] and kernel[1] <= strides[1]
    # windows that tile the padded input exactly write every position once: no zero fill needed
    tiled = kernel == strides and padded_shape[1:3] == (out_shape[0] * kernel[0],
                                                        out_shape[1] * kernel[1])
    dXp = (xp.empty if tiled else xp.zeros)(padded_shape, dtype=dY.dtype, device=dY.device)
    if mode == "max":
        left = dY  # the gradient not yet routed to an earlier maximum of its window
        last = len(views) - 1
        for idx, (rs, cs) in enumerate(views):
            if idx == last and idx > 0:
                # every window holds its maximum, so what no earlier offset took belongs to the
                # last one: no comparison needed (a window whose maximum is NaN, which equals no
                # value, also gives it to its last offset)
                share = left
            else:
                hit = Xp[:, rs, cs, :] == Y
                # inner offsets take their share as a product with the 0/1 mask, faster on a CPU
                # than a select on an unpredictable mask; the first uses the select, one operation
                # (kernel launch) fewer. The two agree for finite gradients; an infinite or NaN
                # upstream gradient spreads as NaN over the inner offsets of its window.
                share = (xp.where(hit, left, 0.0) if idx == 0
                         else left * xp.astype(hit, dY.dtype))
            if disjoint:
                dXp[:, rs, cs, :] = share
            else:
                dXp[:, rs, cs, :] += share
            if idx + 1 < len(views):
                left = left - share
    else:
        share = dY * (1.0 / len(views))
        for rs, cs in views:
            if disjoint:
                dXp[:, rs, cs, :] = share
            else:
                dXp[:, rs, cs, :] += share
    top, bottom, left_, right = pads
    if not any(pads):
        return dXp
    return dXp[:, top:padded_shape[1] - bottom, left_:padded_shape[2] - right, :]
