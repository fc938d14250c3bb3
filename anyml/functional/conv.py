r"""Convolutions as one matrix product: the conv/deconv forward-backward pairs.

All arrays are channels last: a 2-D input is ``(n_ex, in_rows, in_cols, in_ch)``, a 1-D input
``(n_ex, l_in, in_ch)``; 2-D weights are ``(kernel_rows, kernel_cols, in_ch, out_ch)`` and 1-D weights
``(kernel_width, in_ch, out_ch)``. Kernels are applied as a cross-correlation (no flip).

The input is laid out as zero-padded planes and its receptive fields gathered into a column matrix
by :func:`im2col`, whose adjoint is :func:`col2im` (both, with :func:`to_planes` and
:func:`from_planes`, live in :mod:`anyml.functional._im2col` and are re-exported here); a convolution
is then ``colsT.T @ W.reshape(-1, out_ch)``.

The kernels below run over the batch in chunks of a few examples, each chunk's column matrix within
the byte budget that the array's backend sets for its device (:func:`anyml.backend.chunk_bytes`: about
2 MB on a CPU, which stays in the cache between being gathered and being multiplied; more on a GPU,
where fewer, larger products are faster). No full-size column matrix is allocated unless the whole
batch fits the budget: the forward pass keeps only the padded input, and the backward pass gathers each
chunk's columns again. ``max_chunk`` overrides the choice; every chunking gives the same result up to
the rounding of the sums over chunks. Scratch memory can live in a caller-kept workspace (see
:mod:`anyml.functional._workspace`).

The forward kernels can apply a ReLU themselves (``act="relu"``, see :data:`ACTIVATIONS`): each
chunk of the output goes through :math:`\max(\cdot, 0)` while it is in the cache, and the backward
kernel multiplies each chunk of the upstream gradient by the 0/1 mask of the output before using
it, so the activation costs no pass over the whole output of its own (the layers do this for
``act_fn="ReLU"``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from anyml.backend import Array, chunk_bytes, namespace_of, replaceable
from anyml.functional._im2col import (
    col2im,
    flat_shifts,
    from_planes,
    gather,
    gather_flat,
    im2col,
    padded_planes,
    scatter_add,
    to_planes,
    window_offsets,
    windows_disjoint,
)
from anyml.functional._memo import memo
from anyml.functional._padding import (
    Pad4,
    as_pair,
    check_pad_spec,
    conv_out_size,
    effective_kernel,
    explicit_pads,
    resolve_pad1d,
    resolve_pad2d,
)
from anyml.functional._workspace import buffer

__all__ = [
    "ACTIVATIONS",
    "ConvCache",
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

#: The activations the kernels can apply to their output themselves (``act=``): the activation
#: then costs no pass of its own, and its gradient is taken inside the backward pass.
ACTIVATIONS = (None, "relu")

#: The flat stride-1 kernels compute every position of the padded grid; they are used while the
#: grid has at most this many positions per output position (the rest is wasted work).
FLAT_MAX_WASTE = 1.2

#: ... and always while the whole padded batch has at most this many grid positions: for a small
#: input the contiguous slices cost less than the strided ones, whatever the waste.
FLAT_SMALL_GRID = 4096

#: A flat stride-1 convolution whose whole batch is one chunk of at most this many column-matrix
#: elements gathers its columns with one ``take`` (and its input gradient with another) rather
#: than one slice per kernel offset: a few operations instead of dozens (on the emulated GPU a
#: small Conv2D launches 7 kernels forward and 12 backward instead of 15 and 29), but the gathered
#: matrices are fresh arrays rather than workspace buffers, so a small layer's peak memory grows
#: (about 2.5x for the census's Conv2D). Off (0) until the census budget is re-recorded with it;
#: for large convolutions the slices copy faster on a CPU either way.
TAKE_MAX = 0


def _batches(n: int, per_example: int, like: Array, max_chunk: int | None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into near-equal ``(start, stop)`` chunks of at most ``max_chunk`` elements.

    ``per_example`` is the column-matrix size of one example; a chunk holds at least one example.
    The default ``max_chunk`` is the backend's budget (:func:`anyml.backend.chunk_bytes`) in elements
    of ``like``'s dtype.
    """
    if max_chunk is None:
        budget = chunk_bytes(like)
        if budget is not None:
            itemsize = namespace_of(like).finfo(like.dtype).bits // 8
            max_chunk = max(1, budget // itemsize)
    if max_chunk is None or n * per_example <= max_chunk:
        return [(0, n)]
    count = -(-n // max(1, max_chunk // max(per_example, 1)))
    size = -(-n // count)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _column_sums(G: Array, xp: Any, ws: dict | None = None) -> Array:
    """``xp.sum(G, axis=0)`` as a product with a vector of ones: several times faster on a CPU for
    a tall ``G`` (a reduction across rows runs row by row), and no less accurate. The ones are
    kept in the workspace ``ws`` when there is one."""
    return xp.matmul(_constant(ws, (int(G.shape[0]),), 1.0, G, xp), G)


def _constant(ws: dict | None, shape: tuple[int, ...], value: float, like: Array, xp: Any) -> Array:
    """An array of ``shape`` filled with ``value`` (dtype and device of ``like``), made once per
    workspace (it is only read)."""
    key = ("constant", shape, value)
    out = None if ws is None else ws.get(key)
    if (out is None or type(out) is not type(like) or out.dtype != like.dtype
            or out.device != like.device):
        out = xp.full(shape, value, dtype=like.dtype, device=like.device)
        if ws is not None:
            ws[key] = out
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
class ConvCache(NamedTuple):
    """What :func:`conv2d_forward` keeps for :func:`conv2d_backward` (the pure path's cache).

    ``P`` is the padded input as planes (flattened per channel when ``grid`` is set: the flat
    stride-1 layout over a padded grid of ``grid = (rows, cols)``); ``colsT`` the column matrix
    when the whole batch was one chunk (within the backend's budget), else ``None``; ``act`` the
    activation applied in the forward pass and ``Y`` its output (``None`` without one).
    """

    P: Array
    colsT: Array | None  # noqa: N815 - the transposed column matrix, as everywhere here
    W: Array
    batches: list[tuple[int, int]]
    pads: Pad4
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: int
    out_shape: tuple[int, int]
    grid: tuple[int, int] | None
    act: str | None
    Y: Array | None


def _check_act(act: Any, owner: str) -> None:
    if act not in ACTIVATIONS:
        msg = f"{owner}: unknown act {act!r}; expected one of {ACTIVATIONS}"
        raise ValueError(msg)


def _check_conv2d_inputs(X: Array, W: Array, b: Array | None, act: Any, owner: str) -> None:
    """The checks of a 2-D convolution's or transposed convolution's inputs, shared by the pure
    functions here and the native fast paths that replace them."""
    _check_x(X, 4, owner, "(n_ex, in_rows, in_cols, in_ch)")
    _check_w(X, W, b, owner)
    _check_act(act, owner)


def _activate(Z: Array, act: str | None, xp: Any, ws: dict | None = None) -> Array:
    """``Z`` through ``act`` (``"relu"``: :math:`\\max(Z, 0)`, NaN kept, as ``ReLU`` does)."""
    if act is None:
        return Z
    return xp.maximum(Z, _constant(ws, (), 0.0, Z, xp))


def _act_grad(dY: Array, Y: Array | None, act: str | None, xp: Any) -> Array:
    """The gradient wrt. the pre-activation from the output ``Y`` of :func:`_activate`: for ReLU,
    the chain rule's ``dY * [Y > 0]`` (the derivative is 0 at 0 and at NaN, as ``ReLU``'s).

    A product with the 0/1 mask rather than a ``where``: a select on an unpredictable mask runs
    several times slower on a CPU. The two agree except where ``dY`` itself is infinite or NaN at
    an inactive unit (the product, like ``Activation.backward``'s ``dy * f'(z)``, keeps the NaN).
    """
    if act is None or Y is None:
        return dY
    return dY * xp.astype(Y > 0, dY.dtype)


def _conv2d_geometry(pad: Any, stride: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                     dilation: int) -> tuple[tuple[int, int], Pad4, tuple[int, int]]:
    """The strides, the resolved pads and the output size of a 2-D convolution (memoized)."""
    strides = as_pair(stride, "stride", "conv2d")
    pads = resolve_pad2d(pad, in_shape, kernel, strides, dilation, owner="conv2d")
    out_shape = (conv_out_size(in_shape[0], effective_kernel(kernel[0], dilation), strides[0],
                               pads[0] + pads[1]),
                 conv_out_size(in_shape[1], effective_kernel(kernel[1], dilation), strides[1],
                               pads[2] + pads[3]))
    return strides, pads, out_shape


@replaceable
def conv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                   dilation: int = 0, xp: Any = None, *, max_chunk: int | None = None,
                   workspace: dict | None = None, act: str | None = None
                   ) -> tuple[Array, ConvCache]:
    r"""2-D cross-correlation :math:`Z = f(\mathrm{pad}(X) \star W + b)`, channels last.

    .. math::

        Z[n, r, c, o] = f\Big(b_o + \sum_{i, j, k} X_p[n, r s_r + i (d+1), c s_c + j (d+1), k]\,
        W[i, j, k, o]\Big)

    with :math:`f` the identity or, for ``act="relu"``, :math:`\max(\cdot, 0)`.

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
    max_chunk : int, optional
        The most column-matrix elements per matrix product (at least one example per chunk); see
        the module docstring for the default.
    workspace : dict, optional
        Scratch buffers kept from an earlier call (start with ``{}``): the padded input and the
        column matrices go there instead of into fresh memory. A workspace serves one forward /
        backward pair at a time: do not pass it to another forward before the backward of this one.
    act : {None, "relu"}
        An activation applied to each chunk of the output while it is in the cache (no pass of its
        own); :func:`conv2d_backward` then takes the gradient wrt. the output of the activation.

    Returns
    -------
    Z : array of shape (n_ex, out_rows, out_cols, out_ch)
        A fresh array, never part of the workspace.
    cache : ConvCache
        What :func:`conv2d_backward` needs (the padded input, ``W`` and the geometry; also the
        column matrix when the batch was one chunk).

    Notes
    -----
    At stride 1, when padding adds few positions (see :data:`FLAT_MAX_WASTE`), the column matrix
    is gathered over the whole padded grid flattened per channel: each kernel offset is then one
    contiguous slice, and the outputs at the padding positions are computed and dropped.
    """
    xp = namespace_of(X) if xp is None else xp
    _check_conv2d_inputs(X, W, b, act, "conv2d")
    kernel = (int(W.shape[0]), int(W.shape[1]))
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    strides, pads, out_shape = memo(_conv2d_geometry, pad, stride, in_shape, kernel, dilation)
    n, ch, out_ch = int(X.shape[0]), int(X.shape[3]), int(W.shape[3])
    W2 = xp.reshape(W, (-1, out_ch))
    b1 = None if b is None else xp.reshape(b, (out_ch,))
    per = out_shape[0] * out_shape[1]
    rows, cols = in_shape[0] + pads[0] + pads[1], in_shape[1] + pads[2] + pads[3]
    flat = strides == (1, 1) and (rows * cols <= FLAT_MAX_WASTE * per
                                  or n * rows * cols <= FLAT_SMALL_GRID)
    batches = _batches(n, (rows * cols if flat else per) * int(W2.shape[0]), X, max_chunk)
    colsT = None
    if flat:
        grid = rows * cols
        Pf = xp.reshape(padded_planes(X, pads, xp, workspace, spare=1), (ch, (n + 1) * grid))
        shifts = flat_shifts(kernel, dilation, cols)
        Z = xp.empty((n, out_shape[0], out_shape[1], out_ch), dtype=X.dtype, device=X.device)
        taken = _taken(batches, grid, len(shifts), ch)
        zero = None if act is None else _constant(workspace, (), 0.0, X, xp)
        for start, stop in batches:
            if taken:
                idx = _take_index(workspace, "cols", kernel, dilation, (rows, cols), ch, n, xp, X)
                chunk = xp.reshape(xp.take(xp.reshape(Pf, (-1,)), idx, axis=0),
                                   (len(shifts) * ch, n * grid))
            else:
                chunk = gather_flat(Pf, start * grid, stop * grid, shifts, xp, workspace)
            part = xp.matmul(xp.matrix_transpose(chunk), W2)
            if b1 is not None:
                part += b1
            part = xp.reshape(part, (stop - start, rows, cols, out_ch))
            part = part[:, :out_shape[0], :out_shape[1], :]
            Z[start:stop, ...] = part if zero is None else xp.maximum(part, zero)
            del part  # one chunk's product at a time
        colsT = chunk if len(batches) == 1 else None
        return Z, ConvCache(Pf, colsT, W, batches, pads, kernel, strides, dilation, out_shape,
                            (rows, cols), act, Z if act else None)
    P = padded_planes(X, pads, xp, workspace)
    offsets = window_offsets(kernel, strides, dilation, out_shape)
    if len(batches) == 1:
        colsT = gather(P, 0, n, offsets, out_shape, xp, workspace)
        Z = xp.matmul(xp.matrix_transpose(colsT), W2)
        if b1 is not None:
            Z += b1
        Z = _activate(Z, act, xp, workspace)
    else:
        Z = xp.empty((n * per, out_ch), dtype=X.dtype, device=X.device)
        for start, stop in batches:
            chunk = gather(P, start, stop, offsets, out_shape, xp, workspace)
            part = xp.matmul(xp.matrix_transpose(chunk), W2)
            if b1 is not None:
                part += b1  # while the chunk is in the cache
            Z[start * per:stop * per, :] = _activate(part, act, xp, workspace)
            del part
    Z = xp.reshape(Z, (n, out_shape[0], out_shape[1], out_ch))
    return Z, ConvCache(P, colsT, W, batches, pads, kernel, strides, dilation, out_shape, None, act,
                        Z if act else None)


@replaceable
def conv2d_backward(dZ: Array, cache: ConvCache, xp: Any = None,
                    workspace: dict | None = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`conv2d_forward` wrt. ``X``, ``W`` and ``b``.

    With the transposed column matrix :math:`C^\top` of the forward pass (:func:`im2col`) and
    :math:`G = \partial L/\partial Z` flattened to ``(n_ex * out_rows * out_cols, out_ch)``
    (times :math:`f'` of the forward's activation, :math:`[Z > 0]` for ReLU):

    .. math::

        \frac{\partial L}{\partial W} = C^\top G, \quad
        \frac{\partial L}{\partial b} = \textstyle\sum_{\text{rows}} G, \quad
        \frac{\partial L}{\partial X} = \mathrm{crop}(\mathrm{col2im}(W G^\top))

    computed chunk by chunk over the batch like the forward pass (:math:`C^\top G` and the column
    sums are sums of the chunks' products; a chunk's columns are gathered again rather than kept,
    so the scratch memory is two chunks' column matrices). In the flat stride-1 layout :math:`G`
    is zero at the padding positions, which therefore add nothing.

    Parameters
    ----------
    dZ : array shaped like the forward's ``Z``
    cache : ConvCache
        From :func:`conv2d_forward`.
    workspace : dict, optional
        The forward's workspace (scratch memory; the results are fresh arrays).

    Returns
    -------
    dX, dW, db : arrays shaped like X, W and ``(out_ch,)``
    """
    xp = namespace_of(dZ) if xp is None else xp
    P, colsT, W, batches, pads, kernel, strides, dilation, out_shape, flat, act, Y = cache
    out_ch = int(W.shape[3])
    W2 = xp.reshape(W, (-1, out_ch))
    dW = db = None
    if flat is not None:  # P holds the flattened planes of the flat stride-1 kernels
        rows, cols = flat
        ch, grid = int(P.shape[0]), rows * cols
        n = int(P.shape[1]) // grid - 1
        if colsT is not None and _taken(batches, grid, int(W2.shape[0]) // ch, ch):
            return _conv2d_backward_taken(dZ, cache, xp, workspace)
        Gg = buffer(workspace, ("grad_grid", out_shape), (n, rows, cols, out_ch), dZ, xp, zero=True)
        G = xp.reshape(Gg, (n * grid, out_ch))  # zero at the grid positions that are no output
        shifts = flat_shifts(kernel, dilation, cols)
        dPf = xp.zeros(P.shape, dtype=dZ.dtype, device=dZ.device)
        for start, stop in batches:
            Yc = None if Y is None else Y[start:stop, ...]
            Gg[start:stop, :out_shape[0], :out_shape[1], :] = _act_grad(dZ[start:stop, ...], Yc,
                                                                        act, xp)
            q0, q1 = start * grid, stop * grid
            Gc = G[q0:q1, :]
            chunk = colsT if colsT is not None else gather_flat(P, q0, q1, shifts, xp, workspace)
            dW = _accumulate(dW, xp.matmul(chunk, Gc))
            dcolsT = xp.matmul(W2, xp.matrix_transpose(Gc))
            # a window of an output position lies inside its example's grid, so what a shift
            # carries past the chunk's last example comes from positions that are no output (zero
            # gradient, nothing to add): clipped, each chunk adds to its own examples' part only
            for idx, shift in enumerate(shifts):
                dPf[:, q0 + shift:q1] += dcolsT[idx * ch:(idx + 1) * ch, :q1 - q0 - shift]
            del dcolsT  # freed before the next chunk's is made: one at a time
        dP = xp.reshape(dPf, (ch, n + 1, rows, cols))[:, :n, ...]
        # one product for the bias gradient (a small product per chunk costs more in threads)
        return from_planes(dP, pads, xp), xp.reshape(dW, W.shape), _column_sums(G, xp, workspace)
    offsets = window_offsets(kernel, strides, dilation, out_shape)
    disjoint = windows_disjoint(kernel, strides, dilation)
    dP = xp.zeros(P.shape, dtype=dZ.dtype, device=dZ.device)
    for start, stop in batches:
        whole = len(batches) == 1
        Yc = None if Y is None else (Y if whole else Y[start:stop, ...])
        Gc = xp.reshape(_act_grad(dZ if whole else dZ[start:stop, ...], Yc, act, xp), (-1, out_ch))
        chunk = colsT if colsT is not None else gather(P, start, stop, offsets, out_shape, xp,
                                                       workspace)
        dW = _accumulate(dW, xp.matmul(chunk, Gc))
        if act is not None:  # the masked gradient exists chunk by chunk only
            db = _accumulate(db, _column_sums(Gc, xp, workspace))
        scatter_add(dP, xp.matmul(W2, xp.matrix_transpose(Gc)), start, stop, offsets, out_shape,
                    disjoint, xp)
    if db is None:
        db = _column_sums(xp.reshape(dZ, (-1, out_ch)), xp, workspace)
    return from_planes(dP, pads, xp), xp.reshape(dW, W.shape), db


def _taken(batches: list[tuple[int, int]], grid: int, taps: int, ch: int) -> bool:
    """Whether the flat kernels gather with ``take`` (see :data:`TAKE_MAX`)."""
    return len(batches) == 1 and batches[0][1] * grid * taps * ch <= TAKE_MAX


def _take_index(ws: dict | None, kind: str, kernel: tuple[int, int], dilation: int,
                grid: tuple[int, int], ch: int, n: int, xp: Any, like: Array) -> Array:
    """The flat indices of one ``take`` over a padded grid of ``n`` examples (kept in ``ws``).

    ``kind="cols"``: entry ``(s, k, q)`` reads planes ``P`` flattened from ``(ch, (n + 1) grid)``
    at ``k (n + 1) grid + q + shift_s``, the column matrix of :func:`gather_flat`.
    ``kind="grads"``: entry ``(s, o, p)`` reads an output-gradient grid ``(n + 1) grid x ch``
    flattened, whose first example is zeros, at ``(grid + p - shift_s) ch + o``: the columns of the
    input gradient as a convolution of the gradient with the flipped kernel (``ch`` is ``out_ch``).
    Made from ``arange`` on the device (no upload), once per workspace and geometry.
    """
    key = ("take", kind, kernel, dilation, grid, ch, n)
    idx = None if ws is None else ws.get(key)
    if idx is not None:
        return idx
    rows, cols = grid
    size, step = rows * cols, dilation + 1
    dev = like.device
    i = xp.arange(kernel[0], device=dev) * (step * cols)
    j = xp.arange(kernel[1], device=dev) * step
    shifts = xp.reshape(xp.reshape(i, (-1, 1)) + xp.reshape(j, (1, -1)), (-1, 1, 1))
    k = xp.reshape(xp.arange(ch, device=dev), (1, -1, 1))
    q = xp.reshape(xp.arange(n * size, device=dev), (1, 1, -1))
    flat = k * ((n + 1) * size) + q + shifts if kind == "cols" else (q - shifts + size) * ch + k
    idx = xp.reshape(flat, (-1,))
    if ws is not None:
        ws[key] = idx
    return idx


def _conv2d_backward_taken(dZ: Array, cache: ConvCache, xp: Any, ws: dict | None
                           ) -> tuple[Array, Array, Array]:
    """:func:`conv2d_backward` of a small flat convolution (see :data:`TAKE_MAX`): the input
    gradient is the convolution of the zero-padded output gradient with the flipped kernel, its
    columns gathered by one ``take``, so no scatter runs; the column matrix is the forward's."""
    _, colsT, W, batches, pads, kernel, _, dilation, out_shape, flat, act, Y = cache
    rows, cols = flat  # type: ignore[misc]
    taps, ch, out_ch = kernel[0] * kernel[1], int(W.shape[2]), int(W.shape[3])
    n = batches[0][1]
    Gg = buffer(ws, ("grad_grid_taken", out_shape), (n + 1, rows, cols, out_ch), dZ, xp, zero=True)
    Gg[1:, :out_shape[0], :out_shape[1], :] = _act_grad(dZ, Y, act, xp)  # example 0 stays zero
    G = xp.reshape(Gg, (-1, out_ch))[rows * cols:, :]
    dW = xp.matmul(colsT, G)
    idx = _take_index(ws, "grads", kernel, dilation, (rows, cols), out_ch, n, xp, dZ)
    colsG = xp.reshape(xp.take(xp.reshape(Gg, (-1,)), idx, axis=0), (taps * out_ch, -1))
    Wd = xp.reshape(xp.permute_dims(xp.reshape(W, (taps, ch, out_ch)), (1, 0, 2)),
                    (ch, taps * out_ch))
    dP = xp.reshape(xp.matmul(Wd, colsG), (ch, n, rows, cols))
    return from_planes(dP, pads, xp), xp.reshape(dW, W.shape), _column_sums(G, xp, ws)


def _accumulate(total: Array | None, part: Array) -> Array:
    """``total + part`` in place, or ``part`` for the first chunk."""
    if total is None:
        return part
    total += part
    return total


# ----------------------------------------------------------------------------------- Conv1D
@replaceable
def conv1d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: int = 1,
                   dilation: int = 0, xp: Any = None, *, max_chunk: int | None = None,
                   workspace: dict | None = None, act: str | None = None
                   ) -> tuple[Array, tuple[Any, ...]]:
    r"""1-D cross-correlation, channels last: :math:`Z = f(\mathrm{pad}(X) \star W + b)`.

    .. math:: Z[n, t, o] = f\Big(b_o + \sum_{j, k} X_p[n, t s + j (d+1), k]\, W[j, k, o]\Big)

    Parameters
    ----------
    X : array of shape (n_ex, l_in, in_ch)
    W : array of shape (kernel_width, in_ch, out_ch)
    b : array of out_ch values, optional
    pad : int, (left, right), "same" or "causal"
        Resolved by :func:`anyml.functional._padding.resolve_pad1d`: ``"same"``: output length
        ``l_in`` at every stride (numpy-ml's rule, see :func:`anyml.functional._padding.same_pads`),
        an odd pad pixel on the right. ``"causal"``: the same total of zeros, all on the left, so
        the output length is also ``l_in`` and ``Z[:, t]`` depends on ``X[:, :t + 1]`` only.
    stride, dilation : int
    max_chunk, workspace, act
        As for :func:`conv2d_forward`.

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
    n, length, ch = X.shape
    left, right = memo(resolve_pad1d, pad, int(length), int(W.shape[0]), stride, dilation, "conv1d")
    X4 = xp.reshape(X, (n, 1, length, ch))
    W4 = xp.reshape(W, (1, *W.shape))
    Z, cache = conv2d_forward(X4, W4, b, (0, 0, left, right), (1, stride), dilation, xp,
                              max_chunk=max_chunk, workspace=workspace, act=act)
    return xp.reshape(Z, (n, Z.shape[2], Z.shape[3])), (cache, tuple(W.shape))


@replaceable
def conv1d_backward(dZ: Array, cache: tuple[Any, ...], xp: Any = None,
                    workspace: dict | None = None) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv1d_forward` wrt. ``X``, ``W`` and ``b`` (see :func:`conv2d_backward`)."""
    xp = namespace_of(dZ) if xp is None else xp
    inner, w_shape = cache
    n, length, out_ch = dZ.shape
    dX, dW, db = conv2d_backward(xp.reshape(dZ, (n, 1, length, out_ch)), inner, xp, workspace)
    return xp.reshape(dX, (n, dX.shape[2], dX.shape[3])), xp.reshape(dW, w_shape), db


# --------------------------------------------------------------------------------- Deconv2D
def resolve_deconv_pads(pad: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                        stride: tuple[int, int], owner: str = "deconv2d") -> Pad4:
    """How many rows/columns a transposed convolution crops from each side of its full output.

    An int or tuple crops like ``torch.nn.functional.conv_transpose2d(padding=...)``: the output has
    ``(n - 1) * stride + k - pad_total`` positions. ``"same"`` is numpy-ml's: it crops ``k - 1`` in
    all, ``k // 2`` before and ``(k - 1) // 2`` after (an odd pixel at the top/left), leaving
    ``stride * (n - 1) + 1`` positions: the input's grid with ``stride - 1`` new positions between
    neighbours, and ``n`` positions at stride 1. (Keras's ``"same"`` gives ``stride * n``.)
    """
    pad = check_pad_spec(pad, owner)
    if pad == "same":
        pads: Pad4 = (kernel[0] // 2, (kernel[0] - 1) // 2, kernel[1] // 2, (kernel[1] - 1) // 2)
    else:
        pads = explicit_pads(pad)
    for axis, name in ((0, "rows"), (1, "cols")):
        full = (in_shape[axis] - 1) * stride[axis] + kernel[axis]
        if pads[2 * axis] + pads[2 * axis + 1] >= full:
            msg = (f"{owner}: pad {pads[2 * axis]}+{pads[2 * axis + 1]} crops all {full} {name} of "
                   f"the transposed convolution's output (input {in_shape[axis]}, kernel "
                   f"{kernel[axis]}, stride {stride[axis]})")
            raise ValueError(msg)
    return pads


@replaceable
def deconv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                     xp: Any = None, *, max_chunk: int | None = None, act: str | None = None
                     ) -> tuple[Array, tuple[Any, ...]]:
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
    max_chunk : int, optional
        The most column-matrix elements per matrix product, as for :func:`conv2d_forward`.
    act : {None, "relu"}
        An activation applied to the output, as for :func:`conv2d_forward`.

    Returns
    -------
    Z : array of shape (n_ex, out_rows, out_cols, out_ch)
    cache : tuple
        For :func:`deconv2d_backward`.
    """
    xp = namespace_of(X) if xp is None else xp
    _check_conv2d_inputs(X, W, b, act, "deconv2d")
    kr, kc, in_ch, out_ch = (int(v) for v in W.shape)
    strides = as_pair(stride, "stride", "deconv2d")
    n, rows, cols_, _ = (int(v) for v in X.shape)
    pads = resolve_deconv_pads(pad, (rows, cols_), (kr, kc), strides)
    full_shape = (out_ch, n, (rows - 1) * strides[0] + kr, (cols_ - 1) * strides[1] + kc)
    # (kernel_rows * kernel_cols * out_ch, in_ch): row (i, j, o) holds W[i, j, :, o]
    Wt = xp.reshape(xp.permute_dims(W, (0, 1, 3, 2)), (kr * kc * out_ch, in_ch))
    X2 = xp.reshape(X, (n * rows * cols_, in_ch))
    per = rows * cols_
    batches = _batches(n, per * kr * kc * out_ch, X, max_chunk)
    offsets = window_offsets((kr, kc), strides, 0, (rows, cols_))
    disjoint = windows_disjoint((kr, kc), strides, 0)
    full = xp.zeros(full_shape, dtype=X.dtype, device=X.device)
    for start, stop in batches:
        Xc = X2 if len(batches) == 1 else X2[start * per:stop * per, :]
        scatter_add(full, xp.matmul(Wt, xp.matrix_transpose(Xc)), start, stop, offsets,
                    (rows, cols_), disjoint, xp)
    Z = from_planes(full, pads, xp)
    if b is not None:
        Z = Z + xp.reshape(b, (out_ch,))
    Z = _activate(Z, act, xp)
    cache = (X2, Wt, tuple(X.shape), tuple(W.shape), pads, strides, batches, act,
             Z if act else None)
    return Z, cache


@replaceable
def deconv2d_backward(dZ: Array, cache: tuple[Any, ...], xp: Any = None,
                      workspace: dict | None = None) -> tuple[Array, Array, Array]:
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

    computed chunk by chunk over the batch like the forward pass.

    Parameters
    ----------
    dZ : array shaped like the forward's ``Z``
    cache : tuple
        From :func:`deconv2d_forward`.
    workspace : dict, optional
        Scratch buffers kept from an earlier call (start with ``{}``); see :func:`conv2d_forward`.

    Returns
    -------
    dX, dW, db : arrays shaped like X, W and ``(out_ch,)``
    """
    xp = namespace_of(dZ) if xp is None else xp
    X2, Wt, x_shape, w_shape, pads, strides, batches, act, Y = cache
    dZ = _act_grad(dZ, Y, act, xp)
    kr, kc, in_ch, out_ch = w_shape
    per = x_shape[1] * x_shape[2]
    P = padded_planes(dZ, pads, xp, workspace)
    offsets = window_offsets((kr, kc), strides, 0, (x_shape[1], x_shape[2]))
    dX = None if len(batches) == 1 else xp.empty((x_shape[0] * per, in_ch), dtype=dZ.dtype,
                                                 device=dZ.device)
    dWt = None
    for start, stop in batches:
        colsT = gather(P, start, stop, offsets, (x_shape[1], x_shape[2]), xp, workspace)
        Xc = X2 if len(batches) == 1 else X2[start * per:stop * per, :]
        dXc = xp.matmul(xp.matrix_transpose(colsT), Wt)
        if dX is None:
            dX = dXc
        else:
            dX[start * per:stop * per, :] = dXc
        part = xp.matmul(colsT, Xc)
        if dWt is None:
            dWt = part
        else:
            dWt += part
    dW = xp.permute_dims(xp.reshape(dWt, (kr, kc, out_ch, in_ch)), (0, 1, 3, 2))
    # the planes hold dZ and zeros: each channel's sum is one contiguous reduction
    db = xp.sum(xp.reshape(P, (out_ch, -1)), axis=1)
    return xp.reshape(dX, x_shape), dW, db
