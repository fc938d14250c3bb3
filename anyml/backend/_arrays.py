"""Functions on arrays of any backend: their namespace, and their values on the host."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

from anyml.backend._fastpath import backend_class_of

__all__ = ["Array", "namespace_of", "numpy_index_add", "to_numpy"]

#: Any backend's array (the Array API standard has no common class to name).
Array: TypeAlias = Any

_NAMESPACES: dict[type, Any] = {np.ndarray: np}


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

    The indices are sorted once; repeats of an index are ranked, and each rank is added with one
    gather, add and scatter of whole rows (unique indices within a rank, so nothing is lost).
    Heavily repeated indices (many ranks) are summed per index with ``np.add.reduceat`` instead.
    """
    index = np.asarray(index).reshape(-1)
    n = index.shape[0]
    if n == 0:
        return target
    source = np.broadcast_to(source, (n, *target.shape[1:]))
    order = np.argsort(index, kind="stable")
    ordered = index.take(order)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    position = np.arange(n)
    rank = position - np.maximum.accumulate(np.where(first, position, 0))
    n_ranks = int(rank.max()) + 1
    if n_ranks > 8:
        starts = np.flatnonzero(first)
        target[ordered[starts]] += np.add.reduceat(source[order], starts, axis=0)
        return target
    for r in range(n_ranks):  # ``take`` gathers rows faster than fancy indexing does
        chosen = rank == r
        rows = ordered[chosen]
        updated = target.take(rows, axis=0)
        updated += source.take(order[chosen], axis=0)
        target[rows] = updated
    return target
