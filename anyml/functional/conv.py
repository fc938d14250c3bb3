r"""Convolutions as one matrix product: ``im2col``/``col2im`` and the conv/deconv forward-backward pairs.

All arrays are channels last: a 2-D input is ``(n_ex, in_rows, in_cols, in_ch)``, a 1-D input
``(n_ex, l_in, in_ch)``; 2-D weights are ``(kernel_rows, kernel_cols, in_ch, out_ch)`` and 1-D weights
``(kernel_width, in_ch, out_ch)``. Kernels are applied as a cross-correlation (no flip).

:func:`im2col` gathers, for every output position, the receptive field of the padded input into one row
of a matrix ``(n_ex * out_rows * out_cols, kernel_rows * kernel_cols * in_ch)``; it takes one strided
slice of the input per kernel offset and stacks them, so the only Python loop runs over the
``kernel_rows * kernel_cols`` offsets. A convolution is then ``cols @ W.reshape(-1, out_ch)``.
:func:`col2im` is its adjoint: it adds each offset's slice of a column matrix back into a zero buffer
with one strided ``+=`` per offset (overlapping windows accumulate).
"""

from __future__ import annotations

import math
from typing import Any

from anyml.backend import namespace_of
from anyml.functional._padding import (
    Pad4,
    as_pair,
    check_pad_spec,
    conv_out_size,
    effective_kernel,
    resolve_pad2d,
)

__all__ = [
    "col2im",
    "conv1d_backward",
    "conv1d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "deconv2d_backward",
    "deconv2d_forward",
    "from_planes",
    "im2col",
    "resolve_deconv_pads",
    "to_planes",
]

Array = Any


def _offsets(kernel: tuple[int, int], stride: tuple[int, int], dilation: int,
             out_shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The row and column slices of the padded input seen by each kernel offset, row-major."""
    (kr, kc), (sr, sc), (orows, ocols) = kernel, stride, out_shape
    step = dilation + 1
    return [(slice(i * step, i * step + sr * (orows - 1) + 1, sr),
             slice(j * step, j * step + sc * (ocols - 1) + 1, sc))
            for i in range(kr) for j in range(kc)]


def to_planes(X: Array, pads: Pad4, xp: Any) -> Array:
    """Channels-last ``X`` ``(n_ex, rows, cols, ch)`` as zero-padded planes ``(ch, n_ex, rows', cols')``.

    The kernels below work on this layout: each kernel offset's strided slice then copies whole
    runs of ``out_cols`` values, and the column matrix comes out transposed, ``(k * ch, n_ex * out)``,
    which a matrix product reads without a copy.
    """
    top, bottom, left, right = pads
    n, rows, cols, ch = X.shape
    out = xp.zeros((ch, n, rows + top + bottom, cols + left + right), dtype=X.dtype,
                   device=X.device)
    out[:, :, top:top + rows, left:left + cols] = xp.permute_dims(X, (3, 0, 1, 2))
    return out


def from_planes(P: Array, pads: Pad4, xp: Any) -> Array:
    """The inverse of :func:`to_planes`: crop ``pads`` and return a channels-last view."""
    top, bottom, left, right = pads
    _, _, rows, cols = P.shape
    if any(pads):
        P = P[:, :, top:rows - bottom, left:cols - right]
    return xp.permute_dims(P, (1, 2, 3, 0))


def im2col(P: Array, kernel: tuple[int, int], stride: tuple[int, int], dilation: int,
           out_shape: tuple[int, int], xp: Any = None) -> Array:
    """Gather the receptive fields of padded planes into a (transposed) column matrix.

    Parameters
    ----------
    P : array of shape (ch, n_ex, rows, cols)
        The padded input as planes (see :func:`to_planes`).
    kernel, stride : pairs of int
        ``(rows, cols)`` of the kernel and of the stride.
    dilation : int
        Zeros between kernel taps.
    out_shape : pair of int
        ``(out_rows, out_cols)``, the number of windows along each axis.

    Returns
    -------
    colsT : array of shape (kernel_rows * kernel_cols * ch, n_ex * out_rows * out_cols)
        Entry ``[(i * kernel_cols + j) * ch + k, (n * out_rows + r) * out_cols + c]`` is
        ``P[k, n, r*s_r + i*(d+1), c*s_c + j*(d+1)]``; the row order is that of a row-major
        ``W.reshape(-1, out_ch)``, so a convolution is ``colsT.T @ W.reshape(-1, out_ch)``.
    """
    xp = namespace_of(P) if xp is None else xp
    views = [P[:, :, rs, cs] for rs, cs in _offsets(kernel, stride, dilation, out_shape)]
    stacked = xp.stack(views, axis=0)
    ch, n = P.shape[0], P.shape[1]
    return xp.reshape(stacked, (len(views) * ch, n * out_shape[0] * out_shape[1]))


def col2im(colsT: Array, padded_shape: tuple[int, int, int, int], kernel: tuple[int, int],
           stride: tuple[int, int], dilation: int, out_shape: tuple[int, int],
           xp: Any = None) -> Array:
    """The adjoint of :func:`im2col`: add every column entry back to the position it was read from.

    Parameters
    ----------
    colsT : array of shape (kernel_rows * kernel_cols * ch, n_ex * out_rows * out_cols)
    padded_shape : tuple
        ``(ch, n_ex, rows, cols)`` of the padded planes that :func:`im2col` read.

    Returns
    -------
    array of shape ``padded_shape``
        Zero where no window reaches; positions covered by several windows get the sum.
    """
    xp = namespace_of(colsT) if xp is None else xp
    ch, n, _, _ = padded_shape
    offsets = _offsets(kernel, stride, dilation, out_shape)
    blocks = xp.reshape(colsT, (len(offsets), ch, n, out_shape[0], out_shape[1]))
    out = xp.zeros(padded_shape, dtype=colsT.dtype, device=colsT.device)
    # windows that cannot overlap write disjoint positions: plain assignment is enough
    disjoint = all(effective_kernel(k, dilation) <= s for k, s in zip(kernel, stride, strict=True))
    for idx, (rs, cs) in enumerate(offsets):
        if disjoint:
            out[:, :, rs, cs] = blocks[idx, ...]
        else:
            out[:, :, rs, cs] += blocks[idx, ...]
    return out


def _check_x(X: Array, ndim: int, owner: str, shape: str) -> None:
    if X.ndim != ndim:
        msg = f"{owner}: expected X of shape {shape}, got {tuple(X.shape)}"
        raise ValueError(msg)


def _check_w(X: Array, W: Array, b: Array | None, owner: str) -> None:
    if W.ndim != 4 or W.shape[2] != X.shape[3]:
        msg = (f"{owner}: expected W of shape (kernel_rows, kernel_cols, {X.shape[3]}, out_ch) for X "
               f"with {X.shape[3]} channels, got {tuple(W.shape)}")
        raise ValueError(msg)
    if b is not None and math.prod(b.shape) != W.shape[3]:
        msg = f"{owner}: expected b with {W.shape[3]} values (out_ch), got shape {tuple(b.shape)}"
        raise ValueError(msg)


# ----------------------------------------------------------------------------------- Conv2D
def conv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                   dilation: int = 0, xp: Any = None) -> tuple[Array, tuple[Any, ...]]:
    r"""2-D cross-correlation :math:`Z = \mathrm{pad}(X) \star W + b`, channels last.

    .. math::

        Z[n, r, c, o] = b_o + \sum_{i, j, k} X_p[n, r s_r + i (d+1), c s_c + j (d+1), k]\, W[i, j, k, o]

    Parameters
    ----------
    X : array of shape (n_ex, in_rows, in_cols, in_ch)
    W : array of shape (kernel_rows, kernel_cols, in_ch, out_ch)
    b : array of out_ch values, optional
    pad : int, tuple or "same"
        See :func:`anyml.functional._padding.resolve_pad2d`.
    stride : int or pair of int
    dilation : int
        Zeros inserted between kernel taps (0: a plain kernel).

    Returns
    -------
    Z : array of shape (n_ex, out_rows, out_cols, out_ch)
    cache : tuple
        What :func:`conv2d_backward` needs (the column matrix, ``W`` and the geometry).
    """
    xp = namespace_of(X) if xp is None else xp
    _check_x(X, 4, "conv2d", "(n_ex, in_rows, in_cols, in_ch)")
    _check_w(X, W, b, "conv2d")
    kernel = (int(W.shape[0]), int(W.shape[1]))
    strides = as_pair(stride, "stride", "conv2d")
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    pads = resolve_pad2d(pad, in_shape, kernel, strides, dilation, owner="conv2d")
    P = to_planes(X, pads, xp)
    out_shape = (conv_out_size(in_shape[0], effective_kernel(kernel[0], dilation), strides[0],
                               pads[0] + pads[1]),
                 conv_out_size(in_shape[1], effective_kernel(kernel[1], dilation), strides[1],
                               pads[2] + pads[3]))
    colsT = im2col(P, kernel, strides, dilation, out_shape, xp)
    n, out_ch = X.shape[0], W.shape[3]
    Z = xp.matmul(xp.matrix_transpose(colsT), xp.reshape(W, (-1, out_ch)))
    if b is not None:
        Z += xp.reshape(b, (out_ch,))
    Z = xp.reshape(Z, (n, out_shape[0], out_shape[1], out_ch))
    cache = (colsT, W, tuple(P.shape), pads, kernel, strides, dilation, out_shape)
    return Z, cache


def conv2d_backward(dZ: Array, cache: tuple[Any, ...], xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`conv2d_forward` wrt. ``X``, ``W`` and ``b``.

    With the transposed column matrix :math:`C^\top` of the forward pass (:func:`im2col`) and
    :math:`G = \partial L/\partial Z` flattened to ``(n_ex * out_rows * out_cols, out_ch)``:

    .. math::

        \frac{\partial L}{\partial W} = C^\top G, \quad
        \frac{\partial L}{\partial b} = \textstyle\sum_{\text{rows}} G, \quad
        \frac{\partial L}{\partial X} = \mathrm{crop}(\mathrm{col2im}(W G^\top))

    Returns
    -------
    dX, dW, db : arrays shaped like X, W and ``(out_ch,)``
    """
    xp = namespace_of(dZ) if xp is None else xp
    colsT, W, padded_shape, pads, kernel, strides, dilation, out_shape = cache
    out_ch = W.shape[3]
    G = xp.reshape(dZ, (-1, out_ch))
    W2 = xp.reshape(W, (-1, out_ch))
    dW = xp.reshape(xp.matmul(colsT, G), W.shape)
    db = xp.sum(G, axis=0)
    dcolsT = xp.matmul(W2, xp.matrix_transpose(G))
    dP = col2im(dcolsT, padded_shape, kernel, strides, dilation, out_shape, xp)
    return from_planes(dP, pads, xp), dW, db


# ----------------------------------------------------------------------------------- Conv1D
def _pads_1d(pad: Any, owner: str) -> Any:
    pad = check_pad_spec(pad, owner, ndim=1, strings=("same", "causal"))
    if isinstance(pad, tuple):
        return (0, 0, pad[0], pad[1])
    if isinstance(pad, int):
        return (0, 0, pad, pad)
    return pad


def conv1d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: int = 1,
                   dilation: int = 0, xp: Any = None) -> tuple[Array, tuple[Any, ...]]:
    r"""1-D cross-correlation, channels last: :math:`Z = \mathrm{pad}(X) \star W + b`.

    .. math:: Z[n, t, o] = b_o + \sum_{j, k} X_p[n, t s + j (d+1), k]\, W[j, k, o]

    Parameters
    ----------
    X : array of shape (n_ex, l_in, in_ch)
    W : array of shape (kernel_width, in_ch, out_ch)
    b : array of out_ch values, optional
    pad : int, (left, right), "same" or "causal"
        ``"same"``: output length ``ceil(l_in / stride)``, an odd pad pixel on the right.
        ``"causal"``: ``k_eff - 1`` zeros on the left only, so ``Z[:, t]`` depends on
        ``X[:, :t*stride + 1]``; the output length is also ``ceil(l_in / stride)``.
    stride, dilation : int

    Returns
    -------
    Z : array of shape (n_ex, l_out, out_ch)
    cache : tuple
        For :func:`conv1d_backward`.

    Notes
    -----
    Computed as a 2-D convolution of a one-row image.
    """
    xp = namespace_of(X) if xp is None else xp
    _check_x(X, 3, "conv1d", "(n_ex, l_in, in_ch)")
    if W.ndim != 3:
        msg = f"conv1d: expected W of shape (kernel_width, in_ch, out_ch), got {tuple(W.shape)}"
        raise ValueError(msg)
    pads = _pads_1d(pad, "conv1d")
    if pads == "causal":
        pads = (0, 0, effective_kernel(int(W.shape[0]), dilation) - 1, 0)
    n, length, ch = X.shape
    X4 = xp.reshape(X, (n, 1, length, ch))
    W4 = xp.reshape(W, (1, *W.shape))
    Z, cache = conv2d_forward(X4, W4, b, pads, (1, stride), dilation, xp)
    return xp.reshape(Z, (n, Z.shape[2], Z.shape[3])), (cache, tuple(W.shape))


def conv1d_backward(dZ: Array, cache: tuple[Any, ...], xp: Any = None) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv1d_forward` wrt. ``X``, ``W`` and ``b`` (see :func:`conv2d_backward`)."""
    xp = namespace_of(dZ) if xp is None else xp
    inner, w_shape = cache
    n, length, out_ch = dZ.shape
    dX, dW, db = conv2d_backward(xp.reshape(dZ, (n, 1, length, out_ch)), inner, xp)
    return xp.reshape(dX, (n, dX.shape[2], dX.shape[3])), xp.reshape(dW, w_shape), db


# --------------------------------------------------------------------------------- Deconv2D
def resolve_deconv_pads(pad: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], owner: str = "deconv2d") -> Pad4:
    """How many rows/columns a transposed convolution crops from each side of its full output.

    An int or tuple crops like ``torch.nn.functional.conv_transpose2d(padding=...)``: the output has
    ``(n - 1) * stride + k - pad_total`` positions. ``"same"`` crops ``k - stride`` in all (odd pixel at
    the bottom/right), giving ``n * stride`` positions; it needs ``k >= stride``.
    """
    pad = check_pad_spec(pad, owner)
    if pad == "same":
        totals = [k - s for k, s in zip(kernel, stride, strict=True)]
        if min(totals) < 0:
            msg = (f"{owner}: pad='same' needs a kernel at least as large as the stride, got kernel "
                   f"{kernel} and stride {stride}")
            raise ValueError(msg)
        pads: Pad4 = (totals[0] // 2, totals[0] - totals[0] // 2,
                      totals[1] // 2, totals[1] - totals[1] // 2)
    elif isinstance(pad, int):
        pads = (pad, pad, pad, pad)
    elif len(pad) == 2:
        pads = (pad[0], pad[0], pad[1], pad[1])
    else:
        pads = tuple(pad)  # type: ignore[assignment]
    for axis, name in ((0, "rows"), (1, "cols")):
        full = (in_shape[axis] - 1) * stride[axis] + kernel[axis]
        if pads[2 * axis] + pads[2 * axis + 1] >= full:
            msg = (f"{owner}: pad {pads[2 * axis]}+{pads[2 * axis + 1]} crops all {full} {name} of "
                   f"the transposed convolution's output (input {in_shape[axis]}, kernel "
                   f"{kernel[axis]}, stride {stride[axis]})")
            raise ValueError(msg)
    return pads


def deconv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                     xp: Any = None) -> tuple[Array, tuple[Any, ...]]:
    r"""Transposed 2-D convolution (the adjoint of :func:`conv2d_forward` wrt. its input), channels last.

    Every input pixel scatters ``X[n, h, w, :] @ W[i, j]`` to output position
    ``(h s_r + i, w s_c + j)`` of a full output of ``((in_rows - 1) s_r + k_r, (in_cols - 1) s_c + k_c)``,
    from which ``pad`` is cropped:

    .. math::

        Z[n, y, x, o] = b_o + \sum_{h s_r + i = y + p_t,\; w s_c + j = x + p_l} \sum_k X[n, h, w, k]\,
        W[i, j, k, o]

    This equals ``torch.nn.functional.conv_transpose2d(X, W.permute(2, 3, 0, 1), stride=s,
    padding=p)`` in channels-first layout for a symmetric int ``p``.

    Parameters
    ----------
    X : array of shape (n_ex, in_rows, in_cols, in_ch)
    W : array of shape (kernel_rows, kernel_cols, in_ch, out_ch)
    b : array of out_ch values, optional
    pad : int, tuple or "same"
        See :func:`resolve_deconv_pads`.
    stride : int or pair of int

    Returns
    -------
    Z : array of shape (n_ex, out_rows, out_cols, out_ch)
    cache : tuple
        For :func:`deconv2d_backward`.
    """
    xp = namespace_of(X) if xp is None else xp
    _check_x(X, 4, "deconv2d", "(n_ex, in_rows, in_cols, in_ch)")
    _check_w(X, W, b, "deconv2d")
    kr, kc, in_ch, out_ch = (int(v) for v in W.shape)
    strides = as_pair(stride, "stride", "deconv2d")
    n, rows, cols_, _ = (int(v) for v in X.shape)
    pads = resolve_deconv_pads(pad, (rows, cols_), (kr, kc), strides)
    full_shape = (out_ch, n, (rows - 1) * strides[0] + kr, (cols_ - 1) * strides[1] + kc)
    # (kernel_rows * kernel_cols * out_ch, in_ch): row (i, j, o) holds W[i, j, :, o]
    Wt = xp.reshape(xp.permute_dims(W, (0, 1, 3, 2)), (kr * kc * out_ch, in_ch))
    X2 = xp.reshape(X, (n * rows * cols_, in_ch))
    colsT = xp.matmul(Wt, xp.matrix_transpose(X2))
    full = col2im(colsT, full_shape, (kr, kc), strides, 0, (rows, cols_), xp)
    Z = from_planes(full, pads, xp)
    if b is not None:
        Z = Z + xp.reshape(b, (out_ch,))
    cache = (X2, Wt, tuple(X.shape), tuple(W.shape), pads, strides)
    return Z, cache


def deconv2d_backward(dZ: Array, cache: tuple[Any, ...], xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`deconv2d_forward` wrt. ``X``, ``W`` and ``b``.

    The full-size gradient :math:`G` (``dZ`` zero-padded by ``pad``) is read back with
    :func:`im2col` (the adjoint of the forward's scatter), giving :math:`C^\top` of shape
    ``(kernel_rows * kernel_cols * out_ch, n_ex * in_rows * in_cols)``; then with :math:`W_t` the
    ``(kernel_rows * kernel_cols * out_ch, in_ch)`` rearrangement of ``W`` and ``X`` flattened to
    ``(n_ex * in_rows * in_cols, in_ch)``:

    .. math::

        \frac{\partial L}{\partial X} = C W_t, \quad
        \frac{\partial L}{\partial W_t} = C^\top X, \quad
        \frac{\partial L}{\partial b} = \textstyle\sum_{n, y, x} \frac{\partial L}{\partial Z}

    Returns
    -------
    dX, dW, db : arrays shaped like X, W and ``(out_ch,)``
    """
    xp = namespace_of(dZ) if xp is None else xp
    X2, Wt, x_shape, w_shape, pads, strides = cache
    kr, kc, in_ch, out_ch = w_shape
    P = to_planes(dZ, pads, xp)
    colsT = im2col(P, (kr, kc), strides, 0, (x_shape[1], x_shape[2]), xp)
    dX = xp.reshape(xp.matmul(xp.matrix_transpose(colsT), Wt), x_shape)
    dWt = xp.reshape(xp.matmul(colsT, X2), (kr, kc, out_ch, in_ch))
    dW = xp.permute_dims(dWt, (0, 1, 3, 2))
    db = xp.sum(xp.reshape(dZ, (-1, out_ch)), axis=0)
    return dX, dW, db
