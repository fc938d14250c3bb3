"""PyTorch through array-api-compat, on the CPU or a CUDA device."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from anyml._dist import install_hint
from anyml.backend._base import GPU_CHUNK_BYTES, Backend, BackendUnavailableError
from anyml.backend._random import TorchGenerator

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """PyTorch through array-api-compat, on the CPU or a CUDA device."""

    name = "torch"
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
        a = np.asarray(a)  # not ascontiguousarray, which turns a 0-d array into shape (1,)
        host = self.module.from_numpy(np.array(a, dtype=self._host_dtype(a, dtype), copy=True,
                                                order="C"))
        return host.to(self.device)

    @staticmethod
    def array_to_numpy(x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def index_add(self, target: Any, index: Any, source: Any) -> Any:
        return target.index_add_(0, index, source)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.module.cuda.synchronize(self.device)


# PyTorch's own kernels behind the pure functions (registered on TorchBackend when imported)
from anyml.backend import _torch_fast, _torch_fast_recurrent  # noqa: E402, F401
