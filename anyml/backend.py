"""The backend selector: which array library, device and float dtype anyml computes with.

A :class:`Backend` bundles one array library's Array API namespace (``xp``) with a device, a default
float dtype, a seeded random generator and the few operations the standard does not define
(scatter-add with repeated indices, host transfer). Layers take their backend when they are built and
never import an array library themselves.

Choosing a backend, from the most to the least specific:

1. an explicit ``backend=`` argument (a name or a :class:`Backend`);
2. the innermost ``with anyml.use_backend(...)``;
3. :func:`set_backend`;
4. the ``ANYML_BACKEND`` environment variable;
5. ``"numpy"``.

``"auto"`` means CuPy when a CUDA device is usable, else NumPy. CuPy, PyTorch and array-api-strict are
imported only when chosen.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from anyml._dist import install_hint
from anyml._random import CupyGenerator, RandomGenerator, TorchGenerator

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "get_backend",
    "make_backend",
    "namespace_of",
    "resolve_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
]

Array = Any
BACKEND_NAMES = ("numpy", "cupy", "torch", "array-api-strict")
_ALIASES = {"np": "numpy", "cp": "cupy", "pytorch": "torch", "strict": "array-api-strict",
            "array_api_strict": "array-api-strict"}
_FLOAT_DTYPES = ("float32", "float64")


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is chosen that cannot work on this machine; the message says why."""


# --------------------------------------------------------------------------- backends
class Backend:
    """One array library on one device, with a default float dtype and a seeded generator.

    Parameters
    ----------
    device : object, optional
        The library's device (``"cpu"``, ``"cuda:1"``, an array-api-strict ``Device`` or its name).
        Default: the library's default device, except that the torch backend takes a CUDA device
        when PyTorch sees one (``"cpu"`` otherwise).
    dtype : {"float32", "float64"} or dtype, optional
        The float dtype of parameters and of arrays made from host data. Default ``"float32"``.
    seed : int, optional
        Seeds both generators: :attr:`host_rng` (NumPy PCG64, used for initial weights, so that one
        seed gives the same model on every backend) and :attr:`rng` (per-step randomness on the
        device). Default: fresh entropy.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"``, ``"torch"`` or ``"array-api-strict"``.
    xp : module
        The Array API namespace that layers compute with.
    module : module
        The array library itself.
    array_type : type
        The class of this library's arrays.
    """

    name = "base"
    _install_hint = ""
    _generator_class: type[RandomGenerator] = RandomGenerator

    def __init__(self, *, device: Any = None, dtype: Any = None, seed: int | None = None) -> None:
        self.module, self.xp, self.array_type = self._load()
        self.device = self._resolve_device(device)
        self.dtype = self._resolve_dtype(dtype)
        self.host_rng = np.random.default_rng(seed)
        self.rng = self._generator_class(self, seed)

    # --- per-library hooks -------------------------------------------------------------
    def _load(self) -> tuple[Any, Any, type]:
        raise NotImplementedError

    def _resolve_device(self, device: Any) -> Any:
        return device

    def from_host(self, a: np.ndarray, dtype: Any = None) -> Array:
        """Copy a NumPy array onto this backend's device; float arrays take ``dtype`` or the default."""
        raise NotImplementedError

    def to_host(self, x: Array) -> np.ndarray:
        """Copy an array of this backend to a NumPy array."""
        raise NotImplementedError

    def index_add(self, target: Array, index: Array, source: Array) -> Array:
        """Add ``source[i]`` into ``target[index[i]]`` along axis 0, accumulating repeated indices.

        Works in place where the library can and returns the result either way.
        """
        host = self.to_host(target).copy()
        _numpy_index_add(host, self.to_host(index), self.to_host(source))
        return self.from_host(host, dtype=target.dtype)

    def row_broadcasts(self, length: int) -> contextlib.AbstractContextManager[None]:
        """A context for elementwise work that broadcasts per-row values along rows of ``length``.

        It changes how fast such work runs, never its results. The default does nothing; see
        :meth:`NumpyBackend.row_broadcasts` for the one library that needs it.
        """
        return contextlib.nullcontext()

    # --- shared API ----------------------------------------------------------------------
    def _resolve_dtype(self, dtype: Any) -> Any:
        if dtype is None:
            return self.xp.float32
        for name in _FLOAT_DTYPES:
            candidate = getattr(self.xp, name)
            if dtype in (name, candidate) or (
                    isinstance(dtype, type | np.dtype) and np.dtype(dtype) == np.dtype(name)):
                return candidate
        msg = f"{self.name} backend: dtype must be 'float32' or 'float64', got {dtype!r}"
        raise ValueError(msg)

    @property
    def dtype_name(self) -> str:
        """The default float dtype as a string, ``"float32"`` or ``"float64"``."""
        return "float64" if self.dtype == self.xp.float64 else "float32"

    def _host_dtype(self, a: np.ndarray, dtype: Any) -> np.dtype:
        if dtype is not None:
            return np.dtype(self.dtype_name if dtype == self.dtype else _dtype_name(self.xp, dtype))
        if a.dtype.kind == "f":
            return np.dtype(self.dtype_name)
        if a.dtype.kind in "iu":
            return np.dtype(np.int64)
        return a.dtype

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (a no-op on the CPU); for timing."""

    def seed(self, seed: int | None) -> None:
        """Reseed :attr:`host_rng` and :attr:`rng`."""
        self.host_rng = np.random.default_rng(seed)
        self.rng.seed(seed)

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        """Convert ``x`` (host data, a list, or an array of any backend) to an array of this backend.

        Floats become the backend's default dtype unless ``dtype`` (a dtype or its name, such as
        ``"int64"``) is given; host integers become ``int64``. This is the explicit conversion: layers
        refuse arrays of another backend instead of copying them.
        """
        if self.owns(x):
            if dtype is None:
                want = self.dtype if self.xp.isdtype(x.dtype, "real floating") else None
            else:
                want = getattr(self.xp, dtype) if isinstance(dtype, str) else dtype
            return x if want is None or x.dtype == want else self.xp.astype(x, want)
        return self.from_host(to_numpy(x), dtype=dtype)

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this library on this backend's device."""
        return isinstance(x, self.array_type) and self._same_device(x)

    def _same_device(self, x: Array) -> bool:
        return x.device == self.device

    def check_array(self, x: Any, owner: str, name: str = "X") -> None:
        """Raise a ``TypeError`` naming ``owner`` unless ``x`` is an array of this backend and device."""
        if self.owns(x):
            return
        if isinstance(x, self.array_type):
            got = f"an array on device {getattr(x, 'device', None)!r}"
        else:
            got = f"{type(x).__module__}.{type(x).__qualname__}"
        msg = (f"{owner}: expected {name} to be a {self.name} array on device {self.device!r}, got "
               f"{got}; convert it with anyml.get_backend().asarray({name}) or move the layer "
               f"with layer.to(...)")
        raise TypeError(msg)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device!r}, dtype={self.dtype_name!r})"


def _numpy_index_add(target: np.ndarray, index: np.ndarray, source: np.ndarray) -> np.ndarray:
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


#: The shortest rows for which :meth:`NumpyBackend.row_broadcasts` shrinks NumPy's ufunc buffer
#: (layer normalization of 256-value rows gained 7%, of 128-value rows lost 40%).
_MIN_UNBUFFERED_ROW = 256


def _dtype_name(xp: Any, dtype: Any) -> str:
    for name in ("float32", "float64", "int64", "int32", "bool", "uint8"):
        if getattr(xp, name, None) == dtype:
            return name
    return str(dtype)


class NumpyBackend(Backend):
    """NumPy on the CPU (the default)."""

    name = "numpy"

    def _load(self):
        return np, np, np.ndarray

    def _resolve_device(self, device):
        if device not in (None, "cpu"):
            msg = f"numpy backend: the only device is 'cpu', got {device!r}"
            raise ValueError(msg)
        return "cpu"

    def _same_device(self, x):
        return True

    def from_host(self, a, dtype=None):
        a = np.asarray(a)
        return np.array(a, dtype=self._host_dtype(a, dtype), copy=True)

    def to_host(self, x):
        return np.asarray(x)

    def index_add(self, target, index, source):
        return _numpy_index_add(target, index, source)

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


class ArrayApiStrictBackend(Backend):
    """array-api-strict: proves that code uses only the standard; its extra devices simulate a GPU."""

    name = "array-api-strict"
    _install_hint = "pip install array-api-strict"

    def _load(self):
        try:
            import array_api_strict as xps
        except ImportError as exc:
            msg = f"array-api-strict backend: the package is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        from array_api_strict._array_object import Array

        return xps, xps, Array

    def _resolve_device(self, device):
        info = self.xp.__array_namespace_info__()
        if device is None:
            return info.default_device()
        for dev in info.devices():
            if device == dev or device == str(dev) or device == getattr(dev, "_device", None):
                return dev
        names = [getattr(d, "_device", str(d)) for d in info.devices()]
        msg = f"array-api-strict backend: unknown device {device!r}; choose one of {names}"
        raise ValueError(msg)

    def from_host(self, a, dtype=None):
        a = np.asarray(a)
        a = np.ascontiguousarray(a, dtype=self._host_dtype(a, dtype))
        return self.xp.asarray(a, device=self.device, copy=True)

    def to_host(self, x):
        cpu = self.xp.__array_namespace_info__().default_device()
        return np.asarray(x.to_device(cpu) if x.device != cpu else x)


class TorchBackend(Backend):
    """PyTorch through array-api-compat, on the CPU or a CUDA device."""

    name = "torch"
    _install_hint = install_hint("torch")
    _generator_class = TorchGenerator

    def _load(self):
        try:
            import array_api_compat.torch as xpt
            import torch
        except ImportError as exc:
            msg = f"torch backend: PyTorch is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        return torch, xpt, torch.Tensor

    def _resolve_device(self, device):
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

    def from_host(self, a, dtype=None):
        a = np.ascontiguousarray(np.asarray(a))
        host = self.module.from_numpy(np.array(a, dtype=self._host_dtype(a, dtype), copy=True))
        return host.to(self.device)

    def to_host(self, x):
        return x.detach().cpu().numpy()

    def index_add(self, target, index, source):
        return target.index_add_(0, index, source)

    def synchronize(self):
        if self.device.type == "cuda":
            self.module.cuda.synchronize(self.device)


class CupyBackend(Backend):
    """CuPy on a CUDA device."""

    name = "cupy"
    _install_hint = f"for CUDA 12: {install_hint('cupy')}; for CUDA 13: pip install cupy-cuda13x"
    _generator_class = CupyGenerator

    def _load(self):
        try:
            import array_api_compat.cupy as xpc
            import cupy
        except ImportError as exc:
            msg = f"cupy backend: CuPy is not installed; {self._install_hint}"
            raise BackendUnavailableError(msg) from exc
        if not _cupy_usable(cupy):
            msg = ("cupy backend: CuPy is installed but finds no usable CUDA device "
                   "(cupy.is_available() is False); use 'numpy' or 'auto' on this machine")
            raise BackendUnavailableError(msg)
        return cupy, xpc, cupy.ndarray

    def _resolve_device(self, device):
        cupy = self.module
        if device is None:
            return cupy.cuda.Device()
        if isinstance(device, str):
            device = int(device.rsplit(":", 1)[-1]) if ":" in device else 0
        return cupy.cuda.Device(device)

    def _same_device(self, x):
        return x.device.id == self.device.id

    def from_host(self, a, dtype=None):
        a = np.asarray(a)
        with self.device:
            return self.module.array(a, dtype=self._host_dtype(a, dtype))

    def to_host(self, x):
        return x.get()

    def synchronize(self):
        self.device.synchronize()

    def index_add(self, target, index, source):
        import cupyx

        cupyx.scatter_add(target, index, source)
        return target


def _cupy_usable(cupy: Any) -> bool:
    try:
        return bool(cupy.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "not usable"
        return False


_CLASSES: dict[str, type[Backend]] = {
    "numpy": NumpyBackend,
    "cupy": CupyBackend,
    "torch": TorchBackend,
    "array-api-strict": ArrayApiStrictBackend,
}


# --------------------------------------------------------------------------- selection
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
    key = _canonical(name)
    if key == "auto":
        key = "cupy" if _cuda_visible_to_cupy() else "numpy"
    return _CLASSES[key](device=device, dtype=dtype, seed=seed)


def _cuda_visible_to_cupy() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    return _cupy_usable(cupy)


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


# --------------------------------------------------------------------------- arrays of any backend
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
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        return x.detach().cpu().numpy()
    if module == "cupy":
        return x.get()
    if module == "array_api_strict":
        xps = sys.modules["array_api_strict"]
        cpu = xps.__array_namespace_info__().default_device()
        return np.asarray(x.to_device(cpu) if x.device != cpu else x)
    return np.asarray(x)
