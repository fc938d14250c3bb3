"""Functions on arrays of any backend: their namespace, and their values on the host."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

from anyml.backend._fastpath import backend_class_of

__all__ = ["Array", "namespace_of", "numpy_index_add", "to_numpy"]

#: Any backend's array (the Array API standard has no common class to name).
Array: TypeAlias = Any

_NAMESPACES: dict[type, Any] = {np.ndarray: np}
#: Rounds of unique-row updates :func:`numpy_index_add` makes before it sums the rest per index.
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
    n = index.shape[0]
    if n == 0:
        return target
    source = np.broadcast_to(source, (n, *target.shape[1:]))
    position = np.arange(n)
    owner = np.empty(target.shape[0], dtype=np.intp)  # only the entries written are read
    for _ in range(_INDEX_ADD_ROUNDS):
        owner[index] = position
        won = owner[index] == position
        done = bool(won.all())
        rows, chosen = (index, position) if done else (index[won], position[won])
        updated = target.take(rows, axis=0)  # ``take`` gathers rows faster than fancy indexing
        updated += source.take(chosen, axis=0)
        target[rows] = updated
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
    target[ordered[starts]] += np.add.reduceat(source.take(position.take(order), axis=0), starts,
                                               axis=0)
    return target
