r"""NumPy's own reshapes behind the backward pass of tiled max pooling, for arrays of the numpy backend.

:func:`pool2d_backward` replaces :func:`anyml.functional.pool.pool2d_backward` (see "Native fast paths"
in :mod:`anyml.backend`) for small max poolings (at most :data:`MAX_SIZE` values: batch 1, where the
cost of each NumPy call outweighs the arithmetic) whose windows tile the padded input (stride =
kernel, no remainder), the common ``2 x 2, stride 2``. The padded input is then a 6-D view
``(n, out_rows, k_r, out_cols, k_c, ch)`` whose window offsets are axes 2 and 4, and

.. math:: \frac{\partial L}{\partial X_p}[n, r, i, c, j, k] =
          [X_p[n, r, i, c, j, k] = Y[n, r, c, k]] \, \frac{\partial L}{\partial Y}[n, r, c, k]

when every window holds its maximum once: one comparison, two reductions and one select over whole
arrays, instead of the pure path's comparison, product and subtraction per window offset
(a dozen NumPy calls for a ``2 x 2`` window, which at batch 1 cost more than the arithmetic). A
window whose maximum is tied (or NaN) needs the pure path's rule (the first maximum in row-major
order takes the gradient), so such a call is handed back to the pure path (``NotImplemented``), as
is every other case. The result equals the pure path's for finite gradients (an infinite one stays
at its window's maximum here, where the pure path spreads NaN over the window's inner offsets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml.backend._arrays import Array
from anyml.backend._numpy import NumpyBackend

__all__ = ["pool2d_backward"]

#: The largest padded input (values) this path takes. Above, the pure path's strided passes over
#: the window offsets run faster than whole-array passes over the 6-D view, whose innermost runs are
#: one window row of channels (one thread, 2 x 2 windows, float32: 34 against 41 us at 16384 values,
#: 78 against 65 us at 32768, 120 against 87 us at 65536).
MAX_SIZE = 16384


@NumpyBackend.register_fast_path("pool2d_backward")
def pool2d_backward(dY: Array, cache: tuple[Any, ...], xp: Any = None) -> Any:
    """:func:`anyml.functional.pool.pool2d_backward` of tiled max pooling with one maximum per window
    (see the module docstring); ``NotImplemented`` for anything else."""
    if type(dY) is not np.ndarray or type(cache) is not tuple or len(cache) != 8:
        return NotImplemented
    mode, Xp, Y, _, pads, kernel, strides, out_shape = cache
    if (mode != "max" or kernel != strides or type(Xp) is not np.ndarray or type(Y) is not np.ndarray
            or not 0 < Xp.size <= MAX_SIZE or dY.shape != Y.shape or dY.dtype != Y.dtype
            or Xp.dtype != Y.dtype or any(pads)):
        return NotImplemented
    (kr, kc), (orows, ocols) = kernel, out_shape
    n, rows, cols, ch = Xp.shape
    if (orows * kr, ocols * kc) != (rows, cols):
        return NotImplemented
    windows = Xp.reshape(n, orows, kr, ocols, kc, ch)
    hit = windows == Y.reshape(n, orows, 1, ocols, 1, ch)
    # every window holds its maximum at least once unless the maximum is NaN: one maximum per
    # window <=> as many hits as windows and no NaN (two reductions over all, not one per window)
    low = np.minimum.reduce(Y, axis=None)
    if np.count_nonzero(hit) != Y.size or low != low:
        return NotImplemented  # a tie or a NaN: the pure path's first-maximum rule
    dX = np.where(hit, dY.reshape(n, orows, 1, ocols, 1, ch), dY.dtype.type(0))
    return dX.reshape(n, rows, cols, ch)
