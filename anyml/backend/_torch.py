"""PyTorch through array-api-compat, on the CPU or a CUDA device."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from anyml._dist import install_hint
from anyml.backend._base import (
    CPU_RESIDENT_BYTES,
    GPU_CHUNK_BYTES,
    GPU_RESIDENT_BYTES,
    RESIDENT_SHARE,
    Backend,
    BackendUnavailableError,
)
from anyml.backend._random import TorchGenerator
from anyml.backend._transfer import TorchCudaUploader, Uploader

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """PyTorch through array-api-compat, on the CPU or a CUDA device."""

    name = "torch"
    array_module = "torch"
    _install_hint = install_hint("torch")
    _generator_class = TorchGenerator

    def _load(self) -> tuple[Any, Any, type]:
        try:
            import array_api_compat.torch as xpt
            import torch
        except ImportError as exc:
            msg = f"torch backend: PyTorch is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        return torch, xpt, torch.Tensor

    def _resolve_device(self, device: Any) -> Any:
        torch = self.module
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                msg = (f"torch backend: device {device!r} asked for, but this PyTorch sees no CUDA "
                       f"device (torch.cuda.is_available() is False)")
                raise BackendUnavailableError(msg)
            if dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
        return dev

    @classmethod
    def chunk_bytes(cls, device: Any) -> int | None:
        return GPU_CHUNK_BYTES if getattr(device, "type", "cpu") != "cpu" else super().chunk_bytes(device)

    @classmethod
    def device_context(cls, device: Any) -> contextlib.AbstractContextManager[Any]:
        if getattr(device, "type", "cpu") == "cuda":
            import torch

            return torch.cuda.device(device)
        return contextlib.nullcontext()

    def from_host(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a)
        # one copy: the conversion (when the dtype or the layout changes), else a copy on the CPU
        # (the tensor must not share the caller's memory) or the upload to a GPU
        host = np.asarray(a, dtype=self._host_dtype(a, dtype), order="C")
        if not host.flags.writeable or (self.device.type == "cpu" and np.may_share_memory(host, a)):
            host = host.copy()
        return self.stage(host)

    def stage(self, host: np.ndarray) -> Any:
        tensor = self.module.from_numpy(host)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    @property
    def pools_memory(self) -> bool:
        return self.device.type == "cuda"  # PyTorch's caching allocator

    def resident_bytes(self) -> int:
        if self.device.type == "cpu":
            return CPU_RESIDENT_BYTES
        try:
            free, _ = self.module.cuda.mem_get_info(self.device)
        except (AttributeError, RuntimeError):
            return GPU_RESIDENT_BYTES
        return int(free * RESIDENT_SHARE)

    def uploader(self) -> Uploader:
        if self.device.type == "cuda":
                return TorchCudaUploader(self)
        return super().uploader()

    def _dlpack_device(self) -> tuple[int, int] | None:
        if self.device.type == "cpu":
            return (1, 0)
        if self.device.type == "cuda":
            return (2, int(self.device.index))
        return None

    def _from_dlpack(self, x: Any) -> Any:
        return self.module.from_dlpack(x)

    @staticmethod
    def array_to_numpy(x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def index_add(self, target: Any, index: Any, source: Any) -> Any:
        return target.index_add_(0, index, source)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.module.cuda.synchronize(self.device)
