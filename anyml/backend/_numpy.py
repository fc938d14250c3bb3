"""NumPy on the CPU, the default backend; also the host-side scatter-add every backend can fall back to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from anyml.backend._base import Backend

__all__ = ["NumpyBackend", "numpy_index_add"]

#: The shortest rows for which :meth:`NumpyBackend.row_broadcasts` shrinks NumPy's ufunc buffer
#: (layer normalization of 256-value rows gained 7%, of 128-value rows lost 40%).
_MIN_UNBUFFERED_ROW = 256
#: Rounds of unique-row updates :func:`numpy_index_add` makes before it sums the rest per index.
_INDEX_ADD_ROUNDS = 4


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


class NumpyBackend(Backend):
    """NumPy on the CPU (the default)."""

    name = "numpy"

    def _load(self) -> tuple[Any, Any, type]:
        return np, np, np.ndarray

    def _resolve_device(self, device: Any) -> Any:
        if device not in (None, "cpu"):
            msg = f"numpy backend: the only device is 'cpu', got {device!r}"
            raise ValueError(msg)
        return "cpu"

    def _same_device(self, x: Any) -> bool:
        return True

    def from_host(self, a: Any, dtype: Any = None) -> np.ndarray:
        a = np.asarray(a)
        return np.array(a, dtype=self._host_dtype(a, dtype), copy=True)

    @staticmethod
    def array_to_numpy(x: Any) -> np.ndarray:
        return np.asarray(x)

    def index_add(self, target: Any, index: Any, source: Any) -> Any:
        return numpy_index_add(target, index, source)

    @contextlib.contextmanager
    def row_broadcasts(self, length: int) -> Iterator[None]:
        """Shrink NumPy's ufunc buffer to at most ``length`` values inside the context.

        With its default buffer of 8192 values, NumPy copies a value broadcast along rows shorter
        than that into the buffer, to run several rows per inner loop; ``x * s`` with ``x`` of shape
        ``(256, 1024)`` and ``s`` of shape ``(256, 1)`` then costs about 1.7 times ``x * x``. With a
        buffer no longer than a row it runs row by row, as fast as a plain elementwise operation. The
        buffer size only changes how NumPy iterates, so the results are the same; it is restored on
        leaving. Rows shorter than :data:`_MIN_UNBUFFERED_ROW` keep the buffer: one inner loop per
        short row costs more than the copy (4x for layer normalization over 16 values).
        """
        length = int(length)
        if length < _MIN_UNBUFFERED_ROW or length >= np.getbufsize():
            yield
            return
        previous = np.setbufsize(length // 16 * 16)
        try:
            yield
        finally:
            np.setbufsize(previous)
