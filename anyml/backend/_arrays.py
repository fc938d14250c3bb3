"""Functions on arrays of any backend: their namespace, and their values on the host."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

from anyml.backend._fastpath import backend_class_of

__all__ = ["Array", "namespace_of", "numpy_index_add", "scatter_rows", "to_numpy"]

#: Any backend's array (the Array API standard has no common class to name).
Array: TypeAlias = Any

_NAMESPACES: dict[type, Any] = {np.ndarray: np}
#: Rounds of unique-row updates :func:`scatter_rows` makes before it sums the rest per index.
_INDEX_ADD_ROUNDS = 4


def namespace_of(x: Array) -> Any:
    """The Array API namespace of ``x``, cached by type (far cheaper than a fresh lookup).

    NumPy arrays get ``numpy`` itself (it follows the standard since 2.0 and is faster than a wrapper).
    """
    try:
        return _NAMESPACES[type(x)]
    except KeyError:
        pass
    if isinstance(x, np.ndarray | np.generic):
        xp = np
    else:
        import array_api_compat

        xp = array_api_compat.array_namespace(x)
    _NAMESPACES[type(x)] = xp
    return xp


def to_numpy(x: Any) -> np.ndarray:
    """An array of any backend (or host data) as a NumPy array on the host.

    Device arrays are copied; a NumPy array is returned as it is, and a torch CPU tensor shares its
    memory (copy the result before changing it in place).
    """
    if isinstance(x, np.ndarray):
        return x
    cls = backend_class_of(x)
    return np.asarray(x) if cls is None else cls.array_to_numpy(x)


def numpy_index_add(target: np.ndarray, index: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``np.add.at(target, index, source)`` along axis 0, several times faster for row updates.

    Each round adds one occurrence of every index still to do with one gather, add and scatter of
    whole rows: an index written with the positions of its occurrences keeps one of them (the last
    written), so the rows of a round are unique and nothing is lost; the other occurrences wait for
    the next round. No sort is needed, and one round does all when the indices are unique. After a
    few rounds, the rest (heavily repeated indices) is summed per index with ``np.add.reduceat``.
    """
    index = np.asarray(index).reshape(-1)
    return scatter_rows(target, index, np.broadcast_to(source, (index.shape[0], *target.shape[1:])))


def scatter_rows(target: np.ndarray, index: np.ndarray, source: np.ndarray,
                 source_row: np.ndarray | None = None, *, zero: bool = False) -> np.ndarray:
    """Add row ``source[source_row[t]]`` (``source[t]`` without ``source_row``) into
    ``target[index[t]]`` for every ``t``, in place, accumulating repeated indices; return ``target``.

    The rounds of :func:`numpy_index_add`, which this carries out; ``source_row`` lets a row of
    ``source`` serve several indices without being copied once per index. ``zero=True`` promises
    that ``target`` is all zeros: the first round is then assigned rather than added. Rows are
    written through a view of ``target`` with one item per row (:func:`_row_items`) when it is a
    C-contiguous matrix.
    """
    n = int(index.shape[0])
    if n == 0:
        return target
    rows_of = _row_items(target)
    position = np.arange(n)
    owner = np.empty(target.shape[0], dtype=np.intp)  # only the entries written are read
    for _ in range(_INDEX_ADD_ROUNDS):
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
