"""The :class:`Backend` base class: one array library on one device, and what every library shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from anyml.backend._arrays import Array, numpy_index_add, to_numpy
from anyml.backend._fastpath import CPU_CHUNK_BYTES, register_array_module, register_array_type
from anyml.backend._transfer import Uploader

__all__ = ["CPU_CHUNK_BYTES", "Array", "Backend", "BackendUnavailableError", "dtype_name"]

FLOAT_DTYPES = ("float32", "float64")

#: Bytes of scratch memory one convolution chunk may take on a GPU: large enough for matrix products
#: that fill the device, small enough to leave its memory to activations.
GPU_CHUNK_BYTES = 256 << 20


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is chosen that cannot work on this machine; the message says why."""


#: Bytes of training data ``fit`` may keep on a GPU when the library cannot say how much memory is
#: free (see :meth:`Backend.resident_bytes`).
GPU_RESIDENT_BYTES = 1 << 30

#: Bytes of training data ``fit`` may keep as tensors of a CPU library whose arrays are not NumPy's
#: (torch on the CPU), so that minibatches are gathered from converted data.
CPU_RESIDENT_BYTES = 512 << 20

#: The share of a GPU's free memory that ``fit`` may fill with the training data.
RESIDENT_SHARE = 0.25


def dtype_name(dtype: Any) -> str:
    """The standard name (``"float32"``, ``"int64"``, ``"bool"``, ...) of a dtype of any library.

    NumPy and CuPy dtypes (and names, and scalar types) go through :class:`numpy.dtype`; torch and
    array-api-strict dtypes print as ``<module>.<name>``.

    Examples
    --------
    >>> import numpy as np
    >>> dtype_name(np.float32), dtype_name("int64"), dtype_name(np.bool_)
    ('float32', 'int64', 'bool')
    """
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


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
    fast_paths : dict
        Native implementations registered with :meth:`register_fast_path`, by the name of the pure
        function each replaces (shared by every backend of the class).
    """

    name = "base"
    _install_hint = ""
    #: The class of :attr:`rng` (each library module sets its own, from :mod:`anyml.backend._random`).
    _generator_class: ClassVar[type[Any]]
    fast_paths: ClassVar[dict[str, Callable[..., Any]]] = {}

    #: The top-level module of the library's array class (``"torch"``), for
    #: :func:`~anyml.backend.backend_class_of` on arrays made before any backend of the library.
    array_module: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fast_paths = {}  # each library registers its own
        module = cls.__dict__.get("array_module")
        if module:
            register_array_module(module, cls)

    def __init__(self, *, device: Any = None, dtype: Any = None, seed: int | None = None) -> None:
        self.module, self.xp, self.array_type = self._load()
        register_array_type(self.array_type, type(self))
        self.device = self._resolve_device(device)
        self.dtype = self._resolve_dtype(dtype)
        self.host_rng = np.random.default_rng(seed)
        self.rng = self._generator_class(self, seed)

    # --- native fast paths ---------------------------------------------------------------
    @classmethod
    def register_fast_path(cls, name: str,
                           fn: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """Register ``fn`` as this library's implementation of the pure function ``name``.

        Usable as a decorator (``@TorchBackend.register_fast_path("conv2d_forward")``). ``fn`` takes
        the pure function's arguments and returns what it returns, or ``NotImplemented`` to hand this
        call back to the pure path. See :mod:`anyml.backend` for the contract.
        """
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            cls.fast_paths[name] = f
            return f

        return register if fn is None else register(fn)

    @classmethod
    def chunk_bytes(cls, device: Any) -> int | None:
        """Bytes of scratch memory one chunk of a chunked kernel (a convolution) may take on
        ``device``; ``None`` means no limit."""
        return CPU_CHUNK_BYTES

    @property
    def pools_memory(self) -> bool:
        """Whether the library keeps freed device memory in a pool of its own and hands it out
        again without asking the driver (CuPy's memory pool, PyTorch's CUDA caching allocator).

        Layers then keep no idle scratch workspaces between calls: the pool already recycles the
        memory, and a kept workspace would only be held away from the rest of the program. False on
        a CPU, where reusing a workspace spares the system's page allocation and zeroing.
        """
        return False

    # --- per-library hooks -------------------------------------------------------------
    def _load(self) -> tuple[Any, Any, type]:
        raise NotImplementedError

    def _resolve_device(self, device: Any) -> Any:
        return device

    def from_host(self, a: np.ndarray, dtype: Any = None) -> Array:
        """Copy a NumPy array onto this backend's device; float arrays take ``dtype`` or the default."""
        raise NotImplementedError

    def to_host(self, x: Array) -> np.ndarray:
        """Copy an array of this backend to a NumPy array (see :func:`anyml.backend.to_numpy`)."""
        return self.array_to_numpy(x)

    @staticmethod
    def array_to_numpy(x: Array) -> np.ndarray:
        """An array of this library, on any of its devices, as a NumPy array on the host."""
        raise NotImplementedError

    # --- data transfers ------------------------------------------------------------------
    def resident_bytes(self) -> int:
        """Bytes of training data that ``fit`` may copy to this backend's device once and keep
        there for the whole run, gathering each minibatch on the device (0: never; the data stays
        on the host and each minibatch is copied when it is needed).

        0 for NumPy and array-api-strict, whose arrays are host memory already.
        """
        return 0

    def uploader(self) -> Uploader:
        """A new :class:`~anyml.backend._transfer.Uploader` for this backend's minibatches."""
        return Uploader(self)

    def stage(self, host: np.ndarray) -> Array:
        """An array of this backend with the values of ``host``, a fresh host array that the caller
        hands over (it is never read or written again), in its own dtype.

        Libraries that can compute on host memory use it as it is (no copy); the default copies it
        with :meth:`from_host`.
        """
        return self.from_host(host, dtype=host.dtype)

    def _dlpack_device(self) -> tuple[int, int] | None:
        """This backend's device as DLPack names it (``(1, 0)``: the CPU; ``(2, i)``: CUDA device
        ``i``), or ``None`` when arrays of other libraries always go through the host."""
        return None

    def _from_dlpack(self, x: Any) -> Array:
        """An array of this library sharing the memory of ``x`` (on the same device)."""
        raise NotImplementedError

    def _shared(self, x: Any) -> Array | None:
        """``x``, an array of another library on this backend's device, as an array of this one
        that shares its memory (DLPack); ``None`` where that cannot be done."""
        here = self._dlpack_device()
        if here is None or not hasattr(x, "__dlpack__"):
            return None
        try:
            there = tuple(int(v) for v in x.__dlpack_device__())
        except (AttributeError, TypeError, ValueError, BufferError):
            return None
        if there != here:
            return None
        try:
            return self._from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError):
            return None

    def index_add(self, target: Array, index: Array, source: Array) -> Array:
        """Add ``source[i]`` into ``target[index[i]]`` along axis 0, accumulating repeated indices.

        Works in place where the library can and returns the result either way.
        """
        host = self.to_host(target).copy()
        numpy_index_add(host, self.to_host(index), self.to_host(source))
        return self.from_host(host, dtype=target.dtype)

    def row_broadcasts(self, length: int) -> contextlib.AbstractContextManager[None]:
        """A context for elementwise work that broadcasts per-row values along rows of ``length``.

        It changes how fast such work runs, never its results. The default does nothing; see
        :meth:`NumpyBackend.row_broadcasts` for the one library that needs it.
        """
        return contextlib.nullcontext()

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which the library allocates and computes on this backend's device.

        CuPy allocates on its *current* device (and array-api-compat's CuPy creation functions ignore
        ``device=``), so every public entry point of anyml runs inside this context. It does nothing
        on libraries whose every call names its device.
        """
        return self.device_context(self.device)

    @classmethod
    def device_context(cls, device: Any) -> contextlib.AbstractContextManager[Any]:
        """The context that makes ``device`` (a device of this library) the current one."""
        return contextlib.nullcontext()

    # --- shared API ----------------------------------------------------------------------
    def _resolve_dtype(self, dtype: Any) -> Any:
        if dtype is None:
            return self.xp.float32
        for name in FLOAT_DTYPES:
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
        if isinstance(dtype, np.dtype):
            return dtype
        if dtype is not None:
            return np.dtype(self.dtype_name if dtype == self.dtype else dtype_name(dtype))
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

    def asarray(self, x: Any, dtype: Any = None, *, copy: bool | None = None) -> Array:
        """Convert ``x`` (host data, a list, or an array of any backend) to an array of this backend.

        Floats become the backend's default dtype unless ``dtype`` (a dtype or its name, such as
        ``"int64"``) is given; host integers become ``int64``. This is the explicit conversion: layers
        refuse arrays of another backend instead of copying them.

        An array of another library on the same device (a torch CPU tensor for NumPy, a CuPy array
        for torch on that GPU) is taken over through DLPack, without a trip through the host: the
        result shares its memory when no dtype conversion is needed. NumPy arrays are host data and
        are copied, unless ``copy=False`` says that they may be shared too (moving a NumPy model,
        :meth:`anyml.layers.LayerBase.to`). ``copy=True`` always copies.
        """
        if self.owns(x):
            want = self._wanted_dtype(x, dtype)
            if (want is None or x.dtype == want) and not copy:
                return x
            with self.activate():
                return self.xp.astype(x, x.dtype if want is None else want, copy=True)
        if not copy and (copy is False or not isinstance(x, np.ndarray)):
            shared = self._shared(x)
            if shared is not None:
                return self.asarray(shared, dtype=dtype)
        return self.from_host(to_numpy(x), dtype=dtype)

    def _wanted_dtype(self, x: Array, dtype: Any) -> Any:
        """The dtype :meth:`asarray` gives an array ``x`` of this backend (``None``: its own)."""
        if dtype is None:
            return self.dtype if self.xp.isdtype(x.dtype, "real floating") else None
        return getattr(self.xp, dtype) if isinstance(dtype, str) else dtype

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this library on this backend's device."""
        return isinstance(x, self.array_type) and self._same_device(x)

    def _same_device(self, x: Array) -> bool:
        return bool(x.device == self.device)

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
