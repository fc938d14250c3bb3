r"""NumPy's own indexing behind the embedding weight gradient, for arrays of the numpy backend.

:func:`embedding_backward` replaces :func:`anyml.functional.embedding.embedding_backward` (see "Native
fast paths" in :mod:`anyml.backend`). The gradient of the table scatters the upstream gradient back
to the rows that were read, summing over repeated ids:

.. math:: \frac{\partial L}{\partial W_v} = \sum_{(i, t):\, x_{i,t} = v} c_i \,
          \frac{\partial L}{\partial Y_{i(,t)}}

The pure path writes the per-id rows :math:`c_i \, \partial L / \partial Y_i` out as one
``(T, n_out)`` array (a copy of the upstream gradient for each id of a pooled example) and then
scatter-adds them into the accumulator (zeros when none is given). Here:

- no per-id array is built: each scatter round gathers its rows straight from the upstream gradient
  through the example of each id (``t // n_in``, or the segment of a ragged batch);
- when the accumulator is known to hold zeros (``zeros_given``: a gradient just flushed) or there is
  none (fresh zeros), the first round, which holds one occurrence of every id, is *assigned* instead
  of being gathered, added and written back: the rows of the gradient are not read at all, and the
  later rounds only touch the repeated ids;
- rows are written through a view of the gradient with one opaque item per row, which NumPy copies
  about 1.5 times faster than it assigns the rows of a 2-D array.

The results equal the pure path's up to the order in which repeated rows are added (rounding).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml.backend._arrays import Array, scatter_rows
from anyml.backend._numpy import NumpyBackend

__all__ = ["embedding_backward"]

#: The fields of :class:`~anyml.functional.embedding.EmbeddingCache`, the pure forward's cache (known
#: by its fields: the backend package stays below the functional modules in the import order).
_CACHE_FIELDS = ("ids", "segments", "counts", "in_shape", "pool", "W_shape")


@NumpyBackend.register_fast_path("embedding_backward")
def embedding_backward(dY: Array, cache: Any, index_add: Any, xp: Any = None,
                       accumulate_into: Array | None = None, *, zeros_given: bool = False) -> Any:
    """:func:`anyml.functional.embedding.embedding_backward` without the per-id gradient array, and
    with the first scatter round assigned into zeros (``zeros_given``, or no accumulator); see the
    module docstring.

    Hands the call back (``NotImplemented``) for anything but NumPy arrays of one float dtype and the
    pure forward's cache.
    """
    if getattr(cache, "_fields", None) != _CACHE_FIELDS:
        return NotImplemented
    ids, segments, counts, in_shape, pool, W_shape = cache
    if (type(dY) is not np.ndarray or type(ids) is not np.ndarray or ids.ndim != 1
            or dY.dtype.kind != "f" or len(W_shape) != 2
            or (accumulate_into is not None and (type(accumulate_into) is not np.ndarray
                                                 or accumulate_into.dtype != dY.dtype
                                                 or accumulate_into.shape != tuple(W_shape)))):
        return NotImplemented
    n_out, n_ids = int(W_shape[1]), int(ids.shape[0])
    source_row: np.ndarray | None = None
    if pool is None and segments is None:
        if dY.size != n_ids * n_out:
            return NotImplemented  # the pure path raises its own error
        source = dY.reshape(n_ids, n_out)
    else:  # pooled: each id reads the row of its example
        if dY.shape != (int(in_shape[0]), n_out):
            return NotImplemented
        if segments is not None:  # ragged
            if type(segments) is not np.ndarray or (counts is not None
                                                    and type(counts) is not np.ndarray):
                return NotImplemented
            source = dY if counts is None else dY / counts
            source_row = segments
        else:  # rectangular: id t belongs to example t // n_in
            n_in = int(in_shape[1])
            source = dY / n_in if pool == "mean" else dY
            source_row = np.arange(n_ids) // n_in
    if accumulate_into is None:
        target = np.zeros(tuple(W_shape), dtype=dY.dtype)
        return scatter_rows(target, ids, source, source_row, zero=True)
    return scatter_rows(accumulate_into, ids, source, source_row, zero=zeros_given)
