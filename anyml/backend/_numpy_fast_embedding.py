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

from anyml.backend._arrays import Array
from anyml.backend._numpy import NumpyBackend

__all__ = ["embedding_backward", "scatter_rows"]

#: Rounds of unique-row updates :func:`scatter_rows` makes before it sums the rest per index.
_ROUNDS = 4


def scatter_rows(target: np.ndarray, index: np.ndarray, source: np.ndarray,
                 source_row: np.ndarray | None = None, *, zero: bool = False) -> np.ndarray:
    """Add row ``source[source_row[t]]`` (``source[t]`` without ``source_row``) into
    ``target[index[t]]`` for every ``t``, in place, accumulating repeated indices; return ``target``.

    As :func:`anyml.backend._arrays.numpy_index_add`: each round writes one occurrence of every index
    still to do (an index written with the positions of its occurrences keeps one of them, so the rows
    of a round are unique), and after a few rounds the rest (heavily repeated indices) is summed per
    index with ``np.add.reduceat``. ``zero=True`` promises that ``target`` is all zeros: the first
    round is then assigned rather than added.
    """
    n = int(index.shape[0])
    if n == 0:
        return target
    rows_of = _row_items(target)
    position = np.arange(n)
    owner = np.empty(target.shape[0], dtype=np.intp)  # only the entries written are read
    for _ in range(_ROUNDS):
        owner[index] = position
        won = owner.take(index) == position
        done = bool(won.all())
        rows, chosen = (index, position) if done else (index[won], position[won])
        if source_row is not None:
            chosen = source_row.take(chosen)
        if zero:  # every id once, unique rows: no copy of the source when it is the whole of it
            updated = source if done and source_row is None else source.take(chosen, axis=0)
            zero = False
        else:
            updated = target.take(rows, axis=0)  # ``take`` gathers rows faster than fancy indexing
            updated += source.take(chosen, axis=0)
        items = None if rows_of is None else _row_items(updated)
        if items is None:
            target[rows] = updated
        else:
            rows_of[rows] = items
        if done:
            return target
        rest = ~won
        index, position = index[rest], position[rest]
    order = np.argsort(index, kind="stable")
    ordered = index.take(order)
    first = np.empty(ordered.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    picked = position.take(order)
    if source_row is not None:
        picked = source_row.take(picked)
    target[ordered[starts]] += np.add.reduceat(source.take(picked, axis=0), starts, axis=0)
    return target


def _row_items(a: np.ndarray) -> Any:
    """A C-contiguous 2-D array as a 1-D array of its rows (one opaque item per row), or ``None``.

    Assigning rows through this view (``items[rows] = ...``) copies each row as one item, about
    1.5 times faster than NumPy's row-wise fancy assignment on a 2-D array.
    """
    if a.ndim != 2 or not a.flags.c_contiguous or a.shape[1] == 0:
        return None
    return a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).reshape(a.shape[0])


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
