r"""NumPy's own means behind small stride-1 convolutions, for arrays of the numpy backend.

:func:`conv2d_forward` and :func:`conv2d_backward` replace the pure functions of
:mod:`anyml.functional.conv` (see "Native fast paths" in :mod:`anyml.backend`) for convolutions whose
whole column matrix has at most :data:`MAX_COLUMNS` values (batch 1 and other small inputs), where the
pure path's cost is the number of NumPy calls (a slice copy per kernel offset to gather the columns,
a slice addition per offset to scatter the input gradient back, and the transposes into and out of
its channels-first planes), not the arithmetic. Here each pass is a few whole-array calls:

- the column matrix is one copy of a *window view* of the zero-padded, channels-last input (a strided
  view, as :func:`numpy.lib.stride_tricks.as_strided` makes), kept for the backward pass;
- the bias and the ReLU are applied in place on the product;
- the input gradient is the convolution of the zero-padded output gradient with the flipped,
  transposed kernel, gathered the same way, so nothing is scattered:

.. math::

    \frac{\partial L}{\partial X}[n, x, y, k] = \sum_{i, j, o} G_p[n, x + i e, y + j e, o]\,
    W[k_r - 1 - i, k_c - 1 - j, k, o]

with :math:`e` the dilation plus one and :math:`G_p` the gradient wrt. the pre-activation, padded by
:math:`(k_r - 1) e - p_\text{top}` rows above, :math:`(k_r - 1) e - p_\text{bottom}` below and the
same for the columns.

For large convolutions the pure path's chunked kernels are faster on a CPU (its long contiguous
copies and the shapes of its products suit OpenBLAS better; measured at batch 32, 32 x 32 x 16 -> 32:
13.8 ms against 16.9 for a chunked version of this module), so they are handed back
(``NotImplemented``), as are strides above 1 and pads wider than the dilated kernel; Conv1D, which
the pure module runs as a one-row Conv2D, comes here through it. The results equal the pure path's up
to the rounding of sums taken in another order; ``tests/backend/test_numpy_fast_conv.py`` checks
values and gradients against it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from anyml.backend._base import Array
from anyml.backend._numpy import NumpyBackend

__all__ = ["MAX_COLUMNS", "NumpyConvCache", "conv2d_backward", "conv2d_forward"]

#: The largest column matrix (values, the whole batch's) this path takes. Measured with two threads,
#: forward + backward + flush of a Conv2D layer with ReLU against the pure path: 8 x 8 x 4 -> 8 at
#: batch 1 (2,304 values) 0.57 of its time, 8 x 8 x 1 -> 16 at batch 8 (4,608) 0.90, but the same at
#: batch 32 (18,432) 1.24: with one input channel each window row copied is three values long, and
#: the input gradient's product has one column. Beyond the batch-1 regime the pure path's chunked
#: kernels are as fast or faster.
MAX_COLUMNS = 1 << 13


class NumpyConvCache(NamedTuple):
    """What the native :func:`conv2d_forward` keeps for its backward pass: the column matrix
    ``(n * out_rows * out_cols, kernel_rows * kernel_cols * in_ch)``, the kernel, the geometry, and
    the output when a ReLU was applied (its mask is the activation's derivative)."""

    cols: np.ndarray
    W: np.ndarray
    pads: tuple[int, int, int, int]
    step: int
    out_shape: tuple[int, int]
    in_shape: tuple[int, int]
    Z: np.ndarray | None


def _windows(A: np.ndarray, out_shape: tuple[int, int], kernel: tuple[int, int],
             step: int) -> np.ndarray:
    """The view ``(n, out_rows, out_cols, kernel_rows, kernel_cols, ch)`` of the stride-1 windows of
    the C-contiguous, channels-last ``A``, taps ``step`` apart (overlapping: only read from it).

    Made by the ``ndarray`` constructor on ``A``'s buffer, as
    :func:`numpy.lib.stride_tricks.as_strided` would make it, in a tenth of the time (0.4 against
    3.5 us), which counts at the sizes this module serves.
    """
    s = A.strides
    return np.ndarray((A.shape[0], *out_shape, *kernel, A.shape[3]), A.dtype, A, 0,
                      (s[0], s[1], s[2], step * s[1], step * s[2], s[3]))


def _columns(A: np.ndarray, out_shape: tuple[int, int], kernel: tuple[int, int],
             step: int) -> np.ndarray:
    """The column matrix of ``A``'s windows, one row per output position (a new array)."""
    n, ch = A.shape[0], A.shape[3]
    cols = np.empty((n, *out_shape, *kernel, ch), A.dtype)
    np.copyto(cols, _windows(A, out_shape, kernel, step))
    return cols.reshape(n * out_shape[0] * out_shape[1], kernel[0] * kernel[1] * ch)


def _padded(A: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """``A`` zero-padded by ``(top, bottom, left, right)`` rows and columns (a new array)."""
    top, bottom, left, right = pads
    n, rows, cols, ch = A.shape
    out = np.zeros((n, rows + top + bottom, cols + left + right, ch), A.dtype)
    out[:, top:top + rows, left:left + cols, :] = A
    return out


@NumpyBackend.register_fast_path("conv2d_forward")
def conv2d_forward(X: Array, W: Array, b: Array | None = None, pad: Any = 0, stride: Any = 1,
                   dilation: int = 0, xp: Any = None, *, max_chunk: int | None = None,
                   workspace: dict | None = None, act: str | None = None) -> Any:
    """:func:`anyml.functional.conv.conv2d_forward` of a small stride-1 convolution (see the module
    docstring); ``NotImplemented`` for any other."""
    from anyml.functional import conv

    conv._check_conv2d_inputs(X, W, b, act, "conv2d")
    if type(X) is not np.ndarray or type(W) is not np.ndarray or max_chunk is not None:
        return NotImplemented
    kernel = (int(W.shape[0]), int(W.shape[1]))
    in_shape = (int(X.shape[1]), int(X.shape[2]))
    strides, pads, out_shape = conv.memo(conv._conv2d_geometry, pad, stride, in_shape, kernel, dilation)
    step = dilation + 1
    reach = ((kernel[0] - 1) * step, (kernel[1] - 1) * step)
    n, ch, out_ch = int(X.shape[0]), int(X.shape[3]), int(W.shape[3])
    size = n * out_shape[0] * out_shape[1] * kernel[0] * kernel[1] * ch
    if (strides != (1, 1) or not 0 < size <= MAX_COLUMNS or min(out_shape) <= 0
            or X.dtype != W.dtype or X.dtype.kind != "f"
            or (b is not None and (type(b) is not np.ndarray or b.dtype != X.dtype))
            or max(pads[0], pads[1]) > reach[0] or max(pads[2], pads[3]) > reach[1]):
        return NotImplemented
    cols = _columns(_padded(X, pads), out_shape, kernel, step)
    Z = cols @ W.reshape(-1, out_ch)
    if b is not None:
        Z += b.reshape(out_ch)
    if act == "relu":
        np.maximum(Z, 0, out=Z)
    Z = Z.reshape(n, *out_shape, out_ch)
    return Z, NumpyConvCache(cols, W, pads, step, out_shape, in_shape, Z if act == "relu" else None)


@NumpyBackend.register_fast_path("conv2d_backward")
def conv2d_backward(dZ: Array, cache: Any, xp: Any = None, workspace: dict | None = None) -> Any:
    """The gradients of the native :func:`conv2d_forward`: ``dW`` and ``db`` from the kept columns,
    ``dX`` as the convolution of the padded gradient with the flipped kernel."""
    if not isinstance(cache, NumpyConvCache):
        return NotImplemented
    cols, W, pads, step, out_shape, in_shape, Z = cache
    kr, kc, ch, out_ch = (int(v) for v in W.shape)
    n = cols.shape[0] // (out_shape[0] * out_shape[1])
    if type(dZ) is not np.ndarray or tuple(dZ.shape) != (n, *out_shape, out_ch):
        msg = f"conv2d: expected dZ of shape {(n, *out_shape, out_ch)}, got {tuple(dZ.shape)}"
        raise ValueError(msg)
    reach = ((kr - 1) * step, (kc - 1) * step)
    Gp = np.zeros((n, in_shape[0] + reach[0], in_shape[1] + reach[1], out_ch), cols.dtype)
    top, left = reach[0] - pads[0], reach[1] - pads[2]
    G = Gp[:, top:top + out_shape[0], left:left + out_shape[1], :]
    if Z is not None:  # the ReLU's derivative, [Z > 0], as the pure path takes it
        np.greater(Z, 0, out=G)
        G *= dZ
    else:
        G[...] = dZ
    G2 = G.reshape(-1, out_ch)  # a copy: G is a view into the padded grid
    dW = (cols.T @ G2).reshape(W.shape)
    Wf = W[::-1, ::-1].transpose(0, 1, 3, 2).reshape(kr * kc * out_ch, ch)
    dX = (_columns(Gp, in_shape, (kr, kc), step) @ Wf).reshape(n, *in_shape, ch)
    return dX, dW, G2.sum(axis=0)
