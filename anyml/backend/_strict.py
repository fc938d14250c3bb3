"""array-api-strict: proves that code uses only the standard; its extra devices simulate a GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml.backend._base import Backend, BackendUnavailableError
from anyml.backend._random import RandomGenerator

__all__ = ["ArrayApiStrictBackend"]


class ArrayApiStrictBackend(Backend):
    """array-api-strict: proves that code uses only the standard; its extra devices simulate a GPU."""

    name = "array-api-strict"
    array_module = "array_api_strict"
    _install_hint = "pip install array-api-strict"
    _generator_class = RandomGenerator

    def _load(self) -> tuple[Any, Any, type]:
        try:
            import array_api_strict as xps
        except ImportError as exc:
            msg = f"array-api-strict backend: the package is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        from array_api_strict._array_object import Array

        return xps, xps, Array

    def _resolve_device(self, device: Any) -> Any:
        info = self.xp.__array_namespace_info__()
        if device is None:
            return info.default_device()
        for dev in info.devices():
            if device == dev or device == str(dev) or device == getattr(dev, "_device", None):
                return dev
        names = [getattr(d, "_device", str(d)) for d in info.devices()]
        msg = f"array-api-strict backend: unknown device {device!r}; choose one of {names}"
        raise ValueError(msg)

    def from_host(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a)
        a = np.asarray(a, dtype=self._host_dtype(a, dtype), order="C")  # keeps 0-d arrays 0-d
        return self.xp.asarray(a, device=self.device, copy=True)

    @staticmethod
    def array_to_numpy(x: Any) -> np.ndarray:
        import array_api_strict as xps

        cpu = xps.__array_namespace_info__().default_device()
        return np.asarray(x.to_device(cpu) if x.device != cpu else x)
