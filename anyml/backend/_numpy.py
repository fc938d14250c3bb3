"""NumPy on the CPU, the default backend; also the host-side scatter-add every backend can fall back to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from anyml.backend._arrays import numpy_index_add
from anyml.backend._base import Backend
from anyml.backend._random import RandomGenerator

__all__ = ["NumpyBackend", "numpy_index_add"]

#: The shortest rows for which :meth:`NumpyBackend.row_broadcasts` shrinks NumPy's ufunc buffer
#: (shorter rows run slower unbuffered; the measurements are in benchmarks/RESULTS.md).
_MIN_UNBUFFERED_ROW = 256


class NumpyBackend(Backend):
    """NumPy on the CPU (the default)."""

    name = "numpy"
    array_module = "numpy"
    _generator_class = RandomGenerator

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

    def stage(self, host: np.ndarray) -> np.ndarray:
        return host  # handed over: computed on as it is

    def _dlpack_device(self) -> tuple[int, int] | None:
        return (1, 0)

    def _from_dlpack(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

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
