"""Choosing the backend: by name, by scope (``use_backend``), globally, or from the environment."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

from anyml.backend._base import Backend, BackendUnavailableError
from anyml.backend._cupy import CupyBackend, cupy_unusable_reason
from anyml.backend._emulated import EmulatedCudaBackend
from anyml.backend._numpy import NumpyBackend
from anyml.backend._strict import ArrayApiStrictBackend
from anyml.backend._torch import TorchBackend

__all__ = ["available_backends", "get_backend", "make_backend", "resolve_backend", "set_backend",
           "use_backend"]

BACKEND_NAMES = ("numpy", "cupy", "torch", "array-api-strict")
_ALIASES = {"np": "numpy", "cp": "cupy", "pytorch": "torch", "strict": "array-api-strict",
            "array_api_strict": "array-api-strict"}

_CLASSES: dict[str, type[Backend]] = {
    "numpy": NumpyBackend,
    "cupy": CupyBackend,
    "torch": TorchBackend,
    "array-api-strict": ArrayApiStrictBackend,
    "gpulike": EmulatedCudaBackend,  # for tests: not listed in BACKEND_NAMES
}

def _canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key == "auto" or key in _CLASSES:
        return key
    msg = f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} or 'auto'"
    raise ValueError(msg)


def make_backend(name: str = "numpy", *, device: Any = None, dtype: Any = None,
                 seed: int | None = None) -> Backend:
    """Build a new :class:`Backend` by name, without making it the current one.

    Raises
    ------
    BackendUnavailableError
        If the library is not installed or has no usable device here; the message says what to do.
    """
    if not isinstance(name, str):
        msg = (f"make_backend: expected a backend name ({', '.join(BACKEND_NAMES)} or 'auto'), "
               f"got {type(name).__name__} {name!r}")
        raise TypeError(msg)
    key = _canonical(name)
    if key == "auto":
        key = "cupy" if _cuda_visible_to_cupy() else "numpy"
    return _CLASSES[key](device=device, dtype=dtype, seed=seed)


def _cuda_visible_to_cupy() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    return not cupy_unusable_reason(cupy)


def available_backends() -> dict[str, str]:
    """Map each backend name to ``"ok"`` or the reason it cannot be used here."""
    status = {}
    for name in BACKEND_NAMES:
        try:
            make_backend(name)
        except BackendUnavailableError as exc:
            status[name] = str(exc)
        else:
            status[name] = "ok"
    return status


_scoped: contextvars.ContextVar[tuple[Backend, ...]] = contextvars.ContextVar(
    "anyml_scoped_backends", default=())
_current: Backend | None = None


def set_backend(name: str | Backend = "numpy", *, device: Any = None, dtype: Any = None,
                seed: int | None = None) -> Backend:
    """Make a backend the current one for everything built afterwards, and return it.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch", "array-api-strict", "auto"} or Backend
        The array library; ``"auto"`` is CuPy when a CUDA device is usable, else NumPy.
    device, dtype, seed
        See :class:`Backend`.

    Examples
    --------
    >>> import anyml
    >>> anyml.set_backend("numpy", dtype="float64", seed=0)
    Backend('numpy', device='cpu', dtype='float64')
    >>> _ = anyml.set_backend("numpy")
    """
    global _current
    _current = _build(name, device, dtype, seed)
    return _current


def _build(name: str | Backend, device: Any, dtype: Any, seed: int | None) -> Backend:
    if isinstance(name, Backend):
        if device is not None or dtype is not None or seed is not None:
            msg = "set_backend: device, dtype and seed go with a backend name, not a Backend object"
            raise ValueError(msg)
        return name
    return make_backend(name, device=device, dtype=dtype, seed=seed)


def get_backend() -> Backend:
    """The backend in force: the innermost :func:`use_backend`, else :func:`set_backend`, else
    ``ANYML_BACKEND``, else NumPy."""
    scoped = _scoped.get()
    if scoped:
        return scoped[-1]
    global _current
    if _current is None:
        _current = make_backend(os.environ.get("ANYML_BACKEND", "numpy") or "numpy")
    return _current


@contextlib.contextmanager
def use_backend(name: str | Backend = "numpy", *, device: Any = None, dtype: Any = None,
                seed: int | None = None) -> Iterator[Backend]:
    """Use a backend inside a ``with`` block only.

    Examples
    --------
    >>> import anyml
    >>> with anyml.use_backend("numpy", dtype="float64") as be:
    ...     be.dtype_name
    'float64'
    """
    backend = _build(name, device, dtype, seed)
    token = _scoped.set((*_scoped.get(), backend))
    try:
        yield backend
    finally:
        _scoped.reset(token)


def resolve_backend(backend: str | Backend | None) -> Backend:
    """``None`` means :func:`get_backend`; a name builds a fresh backend; a Backend is used as is."""
    if backend is None:
        return get_backend()
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str):
        return make_backend(backend)
    msg = f"expected a backend name or a Backend, got {type(backend).__name__}"
    raise TypeError(msg)
