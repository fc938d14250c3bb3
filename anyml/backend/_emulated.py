"""``"gpulike"``: the CuPy backend on an emulated CUDA device, for tests and census on a CPU.

:class:`EmulatedCudaBackend` is :class:`~anyml.backend.CupyBackend` itself, loaded with the NumPy-backed
stand-in of :mod:`anyml.backend._standin` in place of CuPy and a private copy of array-api-compat's real
CuPy wrappers: every line anyml runs on CuPy runs here, on the CPU. Its default device is device 1 of
the emulated machine, which is neither the default nor the current device, so any allocation or
kernel that escapes :meth:`~anyml.backend.Backend.activate` lands on device 0 and fails loudly.
:attr:`counters` counts kernel launches, host syncs, uploads and bytes (see
:class:`~anyml.backend._standin.Counters`).
"""

from __future__ import annotations

from typing import Any

from anyml.backend import _standin
from anyml.backend._cupy import CupyBackend

__all__ = ["EmulatedCudaBackend"]


class EmulatedCudaBackend(CupyBackend):
    """The CuPy backend on an emulated CUDA device (``make_backend("gpulike")``), for tests.

    Parameters
    ----------
    device : optional
        As for CuPy; default ``"cuda:1"``, a device that is not the current one.
    dtype, seed
        See :class:`~anyml.backend.Backend`.
    """

    name = "gpulike"
    _install_hint = ""

    def _load(self) -> tuple[Any, Any, type]:
        return _standin.standin(), _standin.compat_namespace(), _standin.ndarray

    def _resolve_device(self, device: Any) -> Any:
        return super()._resolve_device(1 if device is None else device)

    def _cupyx(self) -> Any:
        return _standin.cupyx()

    def _dlpack_device(self) -> tuple[int, int] | None:
        return None  # no other library shares the emulated device's memory

    @property
    def counters(self) -> _standin.Counters:
        """Kernel launches, host syncs, uploads and bytes on the emulated machine."""
        return _standin.counters

    @staticmethod
    def peek(x: Any) -> Any:
        """The values of ``x`` on the host without counting a sync: for tests that inspect them."""
        return x._a.copy()
