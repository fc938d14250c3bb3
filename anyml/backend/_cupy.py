"""CuPy on a CUDA device."""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml._dist import install_hint
from anyml.backend._base import GPU_CHUNK_BYTES, Backend, BackendUnavailableError
from anyml.backend._random import CupyGenerator

__all__ = ["CupyBackend", "cupy_usable"]


class CupyBackend(Backend):
    """CuPy on a CUDA device."""

    name = "cupy"
    _install_hint = f"for CUDA 12: {install_hint('cupy')}; for CUDA 13: pip install cupy-cuda13x"
    _generator_class = CupyGenerator

    def _load(self) -> tuple[Any, Any, type]:
        try:
            import array_api_compat.cupy as xpc
            import cupy
        except ImportError as exc:
            msg = f"cupy backend: CuPy is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        if not cupy_usable(cupy):
            msg = ("cupy backend: CuPy is installed but finds no usable CUDA device "
                   "(cupy.is_available() is False); use 'numpy' or 'auto' on this machine")
            raise BackendUnavailableError(msg)
        return cupy, xpc, cupy.ndarray

    @classmethod
    def chunk_bytes(cls, device: Any) -> int | None:
        return GPU_CHUNK_BYTES

    def _resolve_device(self, device: Any) -> Any:
        cupy = self.module
        if device is None:
            return cupy.cuda.Device()
        if isinstance(device, str):
            device = int(device.rsplit(":", 1)[-1]) if ":" in device else 0
        return cupy.cuda.Device(device)

    def activate(self) -> Any:
        return self.device

    def _same_device(self, x: Any) -> bool:
        return bool(x.device.id == self.device.id)

    def from_host(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a)
        with self.device:
            return self.module.array(a, dtype=self._host_dtype(a, dtype))

    def to_host(self, x: Any) -> np.ndarray:
        return x.get()

    def synchronize(self) -> None:
        self.device.synchronize()

    def index_add(self, target: Any, index: Any, source: Any) -> Any:
        import cupyx

        with self.device:
            cupyx.scatter_add(target, index, source)
        return target


def cupy_usable(cupy: Any) -> bool:
    """Whether CuPy finds a usable CUDA device (a broken CUDA install counts as none)."""
    try:
        return bool(cupy.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "not usable"
        return False
