r"""The im2col layout of a convolution: padded "planes", column matrices and their adjoint.

A channels-last input ``(n_ex, rows, cols, ch)`` is first laid out as zero-padded planes
``(ch, n_ex, rows', cols')`` (:func:`to_planes`). :func:`im2col` gathers, for every output position,
the receptive field of the planes into one column of a matrix
``(kernel_rows * kernel_cols * ch, n_ex * out_rows * out_cols)``; it takes one strided slice of the
planes per kernel offset and stacks them, so the only Python loop runs over the
``kernel_rows * kernel_cols`` offsets. A convolution is then ``colsT.T @ W.reshape(-1, out_ch)``.
:func:`col2im` is its adjoint: it adds each offset's slice of a column matrix back into a zero buffer
with one strided ``+=`` per offset (overlapping windows accumulate).

The helpers without a leading underscore that are not re-exported by :mod:`anyml.functional.conv`
(:func:`gather`, :func:`gather_flat`, :func:`scatter_add`, ...) work on a range of examples at a time
and may write into a workspace (see :mod:`anyml.functional._workspace`); they are what the chunked
kernels of :mod:`anyml.functional.conv` are made of.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from anyml.backend import Array, namespace_of
from anyml.functional._padding import Pad4, effective_kernel
from anyml.functional._workspace import buffer

__all__ = [
    "col2im",
    "flat_shifts",
    "from_planes",
    "gather",
    "gather_flat",
    "im2col",
    "padded_planes",
    "scatter_add",
    "to_planes",
    "window_offsets",
    "windows_disjoint",
]



@lru_cache(maxsize=256)
def window_offsets(kernel: tuple[int, int], stride: tuple[int, int], dilation: int,
                   out_shape: tuple[int, int]) -> tuple[tuple[slice, slice], ...]:
    """The row and column slices of the padded input seen by each kernel offset, row-major
    (remembered per geometry; the arguments are ints and pairs of ints)."""
    (kr, kc), (sr, sc), (orows, ocols) = kernel, stride, out_shape
    step = dilation + 1
    return tuple((slice(i * step, i * step + sr * (orows - 1) + 1, sr),
                  slice(j * step, j * step + sc * (ocols - 1) + 1, sc))
                 for i in range(kr) for j in range(kc))


def padded_planes(X: Array, pads: Pad4, xp: Any, ws: dict | None, spare: int = 0) -> Array:
    """:func:`to_planes` into the workspace (whose borders and spare examples stay zero)."""
    top, bottom, left, right = pads
    n, rows, cols, ch = (int(v) for v in X.shape)
    out = buffer(ws, ("planes", pads, spare),
                 (ch, n + spare, rows + top + bottom, cols + left + right), X, xp, zero=True)
    out[:, :n, top:top + rows, left:left + cols] = xp.permute_dims(X, (3, 0, 1, 2))
    return out


def gather(P: Array, start: int, stop: int, offsets: tuple[tuple[slice, slice], ...],
           out_shape: tuple[int, int], xp: Any, ws: dict | None = None) -> Array:
    """:func:`im2col` of the examples ``start:stop`` of the planes ``P``: one strided copy per offset."""
    ch = int(P.shape[0])
    n = stop - start
    shape = (len(offsets), ch, n, out_shape[0], out_shape[1])
    buf = buffer(ws, ("cols", shape), shape, P, xp)
    for idx, (rs, cs) in enumerate(offsets):
        buf[idx, ...] = P[:, start:stop, rs, cs]
    return xp.reshape(buf, (len(offsets) * ch, n * out_shape[0] * out_shape[1]))


def scatter_add(out: Array, colsT: Array, start: int, stop: int,
                offsets: tuple[tuple[slice, slice], ...], out_shape: tuple[int, int],
                disjoint: bool, xp: Any) -> None:
    """Add the column matrix of examples ``start:stop`` back into the planes ``out``, in place."""
    ch = out.shape[0]
    blocks = xp.reshape(colsT, (len(offsets), ch, stop - start, out_shape[0], out_shape[1]))
    for idx, (rs, cs) in enumerate(offsets):
        if disjoint:
            out[:, start:stop, rs, cs] = blocks[idx, ...]
        else:
            out[:, start:stop, rs, cs] += blocks[idx, ...]


@lru_cache(maxsize=256)
def flat_shifts(kernel: tuple[int, int], dilation: int, cols: int) -> tuple[int, ...]:
    """How far each kernel offset reads from a window's origin in a flattened plane of ``cols``."""
    step = dilation + 1
    return tuple(i * step * cols + j * step for i in range(kernel[0]) for j in range(kernel[1]))


def gather_flat(Pf: Array, start: int, stop: int, shifts: tuple[int, ...], xp: Any,
                ws: dict | None = None) -> Array:
    """The column matrix of the grid positions ``start:stop`` of flattened planes ``Pf`` (ch, L).

    With stride 1 the window at flat position ``q`` reads ``Pf[:, q + shift]`` for each offset, so
    each offset's rows are one contiguous slice (a window near a row end reads into the next row;
    those positions are no output and are cropped).
    """
    ch = int(Pf.shape[0])
    shape = (len(shifts), ch, stop - start)
    buf = buffer(ws, ("cols", shape), shape, Pf, xp)
    for idx, shift in enumerate(shifts):
        buf[idx, ...] = Pf[:, start + shift:stop + shift]
    return xp.reshape(buf, (len(shifts) * ch, stop - start))


def windows_disjoint(kernel: tuple[int, int], stride: tuple[int, int], dilation: int) -> bool:
    """Whether windows never overlap, so that a scatter can assign instead of add."""
    return all(effective_kernel(k, dilation) <= s for k, s in zip(kernel, stride, strict=True))


def to_planes(X: Array, pads: Pad4, xp: Any, spare: int = 0) -> Array:
    """Channels-last ``X`` ``(n_ex, rows, cols, ch)`` as zero-padded planes ``(ch, n_ex, rows', cols')``.

    The convolution kernels work on this layout: each kernel offset's strided slice then copies whole
    runs of ``out_cols`` values, and the column matrix comes out transposed, ``(k * ch, n_ex * out)``,
    which a matrix product reads without a copy. ``spare`` all-zero examples are appended (the
    flat stride-1 kernels read past the last example).
    """
    return padded_planes(X, pads, xp, None, spare)


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
    offsets = window_offsets(kernel, stride, dilation, out_shape)
    return gather(P, 0, P.shape[1], offsets, out_shape, xp)


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
    out = xp.zeros(padded_shape, dtype=colsT.dtype, device=colsT.device)
    scatter_add(out, colsT, 0, padded_shape[1], window_offsets(kernel, stride, dilation, out_shape),
                out_shape, windows_disjoint(kernel, stride, dilation), xp)
    return out
