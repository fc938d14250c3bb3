"""CuPy on a CUDA device."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from anyml._dist import install_hint
from anyml.backend._base import (
    GPU_CHUNK_BYTES,
    GPU_RESIDENT_BYTES,
    RESIDENT_SHARE,
    Backend,
    BackendUnavailableError,
)
from anyml.backend._random import CupyGenerator
from anyml.backend._transfer import CupyUploader, Uploader

__all__ = ["CupyBackend", "cupy_unusable_reason"]


class CupyBackend(Backend):
    """CuPy on a CUDA device.

    ``device`` is ``None`` or ``"cuda"`` (the current CUDA device), ``"cuda:<index>"``, an index, or a
    ``cupy.cuda.Device``. CuPy allocates on its current device, so every public entry point of anyml
    runs inside :meth:`activate`.
    """

    name = "cupy"
    array_module = "cupy"
    _install_hint = f"for CUDA 12: {install_hint('cupy')}; for CUDA 13: pip install cupy-cuda13x"
    _generator_class = CupyGenerator

    def _load(self) -> tuple[Any, Any, type]:
        try:
            import array_api_compat.cupy as xpc
            import cupy
        except ImportError as exc:
            msg = f"cupy backend: CuPy is not installed ({exc}); {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        reason = cupy_unusable_reason(cupy)
        if reason:
            msg = (f"cupy backend: CuPy is installed but finds no usable CUDA device ({reason}); "
                   f"use 'numpy' or 'auto' on this machine")
            raise BackendUnavailableError(msg)
        return cupy, xpc, cupy.ndarray

    @classmethod
    def chunk_bytes(cls, device: Any) -> int | None:
        return GPU_CHUNK_BYTES

    def _resolve_device(self, device: Any) -> Any:
        cuda = self.module.cuda
        if device is None:
            return cuda.Device()
        if isinstance(device, cuda.Device):
            return device
        index = device
        if isinstance(device, str):
            text = device.strip().lower()
            if text == "cuda":
                return cuda.Device()
            head, _, tail = text.partition(":")
            if head != "cuda" or not tail.isdigit():
                msg = (f"cupy backend: device must be 'cuda' (the current device), 'cuda:<index>' or "
                       f"an index, got {device!r}")
                raise ValueError(msg)
            index = int(tail)
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            msg = f"cupy backend: device must be 'cuda', 'cuda:<index>' or an index, got {device!r}"
            raise ValueError(msg)
        count = cuda.runtime.getDeviceCount()
        if not 0 <= int(index) < count:
            msg = f"cupy backend: no CUDA device {int(index)}; this machine has {count} (0 to {count - 1})"
            raise ValueError(msg)
        return cuda.Device(int(index))

    @classmethod
    def device_context(cls, device: Any) -> Any:
        return device if hasattr(device, "__enter__") else contextlib.nullcontext()

    def _same_device(self, x: Any) -> bool:
        return bool(x.device.id == self.device.id)

    def from_host(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a)
        host = np.asarray(a, dtype=self._host_dtype(a, dtype))  # converted before it travels
        with self.device:
            return self.module.array(host)

    @staticmethod
    def array_to_numpy(x: Any) -> np.ndarray:
        return x.get()

    @property
    def pools_memory(self) -> bool:
        return True  # CuPy's memory pool

    def resident_bytes(self) -> int:
        try:
            free, _ = self.device.mem_info
        except (AttributeError, RuntimeError):
            return GPU_RESIDENT_BYTES
        return int(free * RESIDENT_SHARE)

    def uploader(self) -> Uploader:
        return CupyUploader(self)

    def _dlpack_device(self) -> tuple[int, int] | None:
        return (2, int(self.device.id))

    def _from_dlpack(self, x: Any) -> Any:
        with self.device:
            return self.module.from_dlpack(x)

    def synchronize(self) -> None:
        self.device.synchronize()

    def _cupyx(self) -> Any:
        import cupyx

        return cupyx

    def index_add(self, target: Any, index: Any, source: Any) -> Any:
        with self.device:
            self._cupyx().scatter_add(target, index, source)
        return target


def cupy_unusable_reason(cupy: Any) -> str:
    """Why CuPy cannot use a CUDA device here, in CuPy's own words; ``""`` when it can."""
    try:
        if cupy.is_available():
            return ""
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install means "not usable"
        return f"{type(exc).__name__}: {exc}"
    try:  # is_available() hides the reason; asking for the device count raises it
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return f"cupy.is_available() is False with {count} device(s) visible"

