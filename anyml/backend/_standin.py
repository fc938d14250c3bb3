"""A NumPy-backed stand-in for the ``cupy`` module: an emulated two-GPU machine for tests on a CPU.

It gives array-api-compat's real CuPy wrappers (``array_api_compat.cupy``) something to wrap, so that
anyml runs on the CPU through exactly the code paths it takes on CuPy, and it keeps the books a GPU
would make expensive:

- **devices**: two emulated CUDA devices, ``0`` current by default; arrays are made on the *current*
  device (as CuPy does, whatever ``device=`` array-api-compat was given), and a kernel whose inputs
  live on another device than the current one raises ``ValueError``, as CuPy does;
- **kernel launches**: one per call that computes into memory (views, reshapes and broadcasts are
  free, an ``empty`` only allocates);
- **host syncs**: every read of device data by the host (``bool``, ``float``, ``int``, ``item``,
  ``get``, ``tolist``, boolean-mask indexing, functions whose result size depends on the data such as
  ``nonzero``), with the line of anyml that asked, in :attr:`Counters.sync_sites`;
- **memory**: bytes allocated, bytes live and the peak, from when each buffer is made until it is
  freed; and uploads from the host (those from pinned host memory, ``cupyx.empty_pinned``, counted
  apart too);
- **streams and events**: ``cupy.cuda.Stream``, ``Event`` and ``get_current_stream``, in order (the
  emulated device runs everything at once); waiting on the host for one (``synchronize``) is a sync,
  asking whether it is done (``Event.done``) is not.

Host NumPy arrays are refused where CuPy refuses them (``TypeError``), and implicit conversion to
NumPy (``np.asarray(x)``) raises as on CuPy: ``x.get()`` is the way to the host.

The stand-in never enters ``sys.modules`` under the name ``cupy`` for longer than it takes to import
its own copy of array-api-compat's wrappers (see :func:`compat_namespace`), so a real CuPy on the same
machine is left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
import threading
import traceback
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["Counters", "Device", "Event", "Stream", "compat_namespace", "counters", "ndarray",
           "standin"]

#: Emulated CUDA devices on the machine.
DEVICE_COUNT = 2

#: Functions whose result's size depends on the data, so the host must wait for the device.
_SYNCING = frozenset({"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract",
                      "array_equal", "array_equiv", "allclose", "isclose_all", "unique_values",
                      "unique_counts", "unique_inverse", "unique_all", "tolist"})
#: Creation functions that only allocate.
_ALLOCATING = frozenset({"empty", "empty_like"})
#: NumPy 2 names that CuPy 13 lacks; array-api-compat supplies its own versions of them.
_MISSING_IN_CUPY = frozenset({"isdtype", "vecdot", "unstack", "matrix_transpose", "permute_dims",
                              "concat", "astype", "bitwise_invert", "bitwise_left_shift",
                              "bitwise_right_shift", "pow", "acos", "acosh", "asin", "asinh", "atan",
                              "atan2", "atanh", "vector_norm", "matrix_norm", "cumulative_sum",
                              "cumulative_prod"})
_HERE = os.path.dirname(os.path.abspath(__file__))
_ANYML = os.path.dirname(_HERE)
_FUNCTIONAL = os.path.join(_ANYML, "functional")


@dataclasses.dataclass
class Counters:
    """What the emulated device has done since the last :meth:`reset`."""

    launches: int = 0
    syncs: int = 0
    uploads: int = 0
    pinned_uploads: int = 0
    upload_bytes: int = 0
    allocated_bytes: int = 0
    live_bytes: int = 0
    peak_bytes: int = 0
    sync_sites: list[str] = dataclasses.field(default_factory=list)

    def reset(self) -> None:
        """Zero the counts; the peak restarts from the bytes live now."""
        self.launches = self.syncs = self.uploads = self.upload_bytes = self.allocated_bytes = 0
        self.pinned_uploads = 0
        self.peak_bytes = self.live_bytes
        self.sync_sites = []

    def snapshot(self) -> dict[str, int]:
        """The counts as a dict (without the sync sites)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "sync_sites"}


counters = Counters()
_state = threading.local()
_ambient: list[int] = []
_roots: dict[int, Any] = {}


# --------------------------------------------------------------------------- devices
def _current_id() -> int:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    if _ambient and not _public_anyml_call():
        return _ambient[0]
    return 0


def _public_anyml_call() -> bool:
    """Whether this call into the stand-in comes from a public function of anyml.

    The stack is walked up past the stand-in and array-api-compat to the first frame outside anyml
    (a test); the anyml function that frame called decides: a public one must have entered its
    device itself; a private helper (``_name``) and the kernels of :mod:`anyml.functional` (which,
    like CuPy's functions, run on the current device unless replaceable) run as their caller would.
    """
    frame = sys._getframe(2)
    entry = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_ANYML):
            if not name.endswith("_standin.py"):
                entry = frame
        elif "array_api_compat" not in name:
            if entry is None:
                return False
            function = entry.f_code.co_name
            private = function.startswith("_") and not function.endswith("__")
            return not (private or entry.f_code.co_filename.startswith(_FUNCTIONAL))
        frame = frame.f_back  # type: ignore[assignment]
    return True


def set_ambient_device(device: int | None) -> None:
    """Let code outside anyml (a test) run as if ``device`` were current, without a ``with`` block.

    anyml's public functions still see the true current device (0 outside any ``with Device``), so a
    kernel they launch outside their backend's :meth:`~anyml.backend.Backend.activate` still fails;
    private helpers called by the test directly run on ``device``. The test matrix sets this for the
    ``gpulike`` id, so that tests may compute expected values on the backend's arrays as they would
    after ``with backend.activate():``.
    """
    _ambient[:] = [] if device is None else [int(device)]


class Device:
    """An emulated CUDA device: ``with Device(1):`` makes it current, as ``cupy.cuda.Device`` does."""

    id: int

    def __init__(self, device: Any = None) -> None:
        if device is None:
            device = _current_id()
        if isinstance(device, Device):
            device = device.id
        if not isinstance(device, int | np.integer) or not 0 <= int(device) < DEVICE_COUNT:
            msg = f"Invalid device ID: {device!r} (the emulated machine has {DEVICE_COUNT} devices)"
            raise ValueError(msg)
        self.id = int(device)

    def __enter__(self) -> Device:
        if not hasattr(_state, "stack"):
            _state.stack = []
        _state.stack.append(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        _state.stack.pop()

    def use(self) -> None:
        """Make this device current outside any ``with`` block."""
        if not hasattr(_state, "stack"):
            _state.stack = []
        _state.stack[:] = [self.id]

    def synchronize(self) -> None:
        """Wait for the device (counted as a sync, like any host wait)."""
        _sync("Device.synchronize")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("emulated-cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


def _sync(what: str) -> None:
    counters.syncs += 1
    site = "?"
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename.startswith(_ANYML) and not frame.filename.startswith(_HERE):
            site = f"{os.path.relpath(frame.filename, os.path.dirname(_ANYML))}:{frame.lineno}"
            break
    counters.sync_sites.append(f"{what} at {site}")


def _freed(nbytes: int, key: int) -> None:
    counters.live_bytes -= nbytes
    _roots.pop(key, None)


def _track(a: np.ndarray) -> None:
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    key = id(root)
    if key in _roots:
        return
    nbytes = int(root.nbytes)
    counters.allocated_bytes += nbytes
    counters.live_bytes += nbytes
    counters.peak_bytes = max(counters.peak_bytes, counters.live_bytes)
    _roots[key] = weakref.finalize(root, _freed, nbytes, key)


# --------------------------------------------------------------------------- arrays
class ndarray:  # noqa: N801 - the name CuPy gives its array class
    """An array on an emulated CUDA device: a NumPy array and the id of the device that holds it."""

    __slots__ = ("__weakref__", "_a", "_device")
    __array_ufunc__ = None  # NumPy hands mixed operations back to us, which refuse host arrays
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, a: np.ndarray, device: int) -> None:
        self._a = a
        self._device = device

    # --- what the host may read without the device -------------------------------------------
    @property
    def device(self) -> Device:
        return Device(self._device)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def flags(self) -> Any:
        return self._a.flags

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"emulated_cupy.ndarray(shape={self.shape}, dtype={self.dtype}, device={self._device})"

    def __array_namespace__(self, api_version: str | None = None) -> Any:
        return compat_namespace()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self._device)  # kDLCUDA

    # --- host reads: each one is a sync ---------------------------------------------------------
    def get(self, stream: Any = None, order: Any = "C", out: Any = None) -> np.ndarray:
        _sync("get")
        return self._a.copy(order=order)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        """Copy host data into this array (asynchronously on ``stream`` when ``arr`` is pinned)."""
        if not isinstance(arr, np.ndarray):
            msg = f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}"
            raise TypeError(msg)
        if arr.shape != self.shape or arr.dtype != self.dtype:
            msg = f"Shape or dtype mismatch: {arr.shape} {arr.dtype} into {self.shape} {self.dtype}"
            raise ValueError(msg)
        _check_devices([self])
        _upload(arr)
        self._a[...] = arr

    def item(self, *args: Any) -> Any:
        _sync("item")
        return self._a.item(*args)

    def tolist(self) -> Any:
        _sync("tolist")
        return self._a.tolist()

    def __bool__(self) -> bool:
        _sync("bool")
        return bool(self._a)

    def __float__(self) -> float:
        _sync("float")
        return float(self._a)

    def __int__(self) -> int:
        _sync("int")
        return int(self._a)

    def __index__(self) -> int:
        _sync("index")
        return self._a.__index__()

    def __complex__(self) -> complex:
        _sync("complex")
        return complex(self._a)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        msg = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
               "a NumPy array explicitly.")
        raise TypeError(msg)

    def __iter__(self) -> Iterator[ndarray]:
        for i in range(len(self)):
            yield self[i]

    # --- indexing -------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> ndarray:
        key, masked, gathered = _unwrap_key(key, self._device)
        if masked:
            _sync("boolean-mask indexing")
        if not masked and not gathered:
            basic = key if isinstance(key, tuple) else (key,)
            if Ellipsis not in basic:
                basic = (*basic, Ellipsis)
            return ndarray(self._a[basic], self._device)  # a view, as on CuPy
        _launch([self], "getitem")
        return _new(self._a[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        key, masked, _ = _unwrap_key(key, self._device)
        if masked:
            _sync("boolean-mask assignment")
        if isinstance(value, np.ndarray):
            _upload(value)
        elif isinstance(value, ndarray):
            _check_devices([value])
            value = value._a
        _launch([self], "setitem")
        self._a[key] = value

    # --- everything else NumPy's ndarray has (astype, copy, reshape, T, mT, sum, ...) ----------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__, buffer or other way to the host
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _kernel(attr, name, bound=self)
        if isinstance(attr, np.ndarray):
            return _wrap(attr, [self], name)
        return attr


def _binary(ufunc: Callable[..., Any], reflected: bool = False,
            inplace: bool = False) -> Callable[..., Any]:
    def op(self: ndarray, other: Any) -> Any:
        if inplace:
            return _run(ufunc, ufunc.__name__, (self, other), {"out": self}, None)
        args = (other, self) if reflected else (self, other)
        return _run(ufunc, ufunc.__name__, args, {}, None)

    return op


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("floordiv", np.floor_divide), ("mod", np.remainder),
                      ("pow", np.power), ("matmul", np.matmul), ("and", np.bitwise_and),
                      ("or", np.bitwise_or), ("xor", np.bitwise_xor), ("lshift", np.left_shift),
                      ("rshift", np.right_shift)]:
    setattr(ndarray, f"__{_name}__", _binary(_ufunc))
    setattr(ndarray, f"__r{_name}__", _binary(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_name}__", _binary(_ufunc, inplace=True))
for _name, _ufunc in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(ndarray, f"__{_name}__", _binary(_ufunc))
for _name, _ufunc in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute),
                      ("invert", np.invert)]:
    setattr(ndarray, f"__{_name}__",
            (lambda u: lambda self: _run(u, u.__name__, (self,), {}, None))(_ufunc))


# --------------------------------------------------------------------------- the bookkeeping
def _unwrap_key(key: Any, device: int) -> tuple[Any, bool, bool]:
    parts = key if isinstance(key, tuple) else (key,)
    out, masked, gathered = [], False, False
    for part in parts:
        if isinstance(part, ndarray):
            if part._device != device:
                msg = f"index array on device {part._device}, indexed array on device {device}"
                raise ValueError(msg)
            masked |= part.dtype == np.bool_ and part.ndim > 0
            gathered = True
            part = part._a
        elif isinstance(part, np.ndarray):
            msg = f"Unsupported index type {type(part)} (a host array indexing a device array)"
            raise TypeError(msg)
        elif isinstance(part, list):
            gathered = True
            masked |= any(isinstance(p, bool | np.bool_) for p in part)
        out.append(part)
    return (tuple(out) if isinstance(key, tuple) else out[0]), masked, gathered


def _check_devices(arrays: list[ndarray]) -> None:
    current = _current_id()
    for x in arrays:
        if x._device != current:
            msg = (f"Array device must be same as the current device: array device = {x._device} "
                   f"while current = {current}")
            raise ValueError(msg)


def _launch(arrays: list[ndarray], what: str) -> None:
    _check_devices(arrays)
    counters.launches += 1


def _upload(a: np.ndarray) -> None:
    counters.uploads += 1
    counters.upload_bytes += int(a.nbytes)
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if id(root) in _pinned:
        counters.pinned_uploads += 1


#: Pinned host buffers (``cupyx.empty_pinned``) by the id of their memory, while they live.
_pinned: dict[int, Any] = {}


def _empty_pinned(shape: Any, dtype: Any = float, order: Any = "C") -> np.ndarray:
    """``cupyx.empty_pinned``: host memory marked as page-locked."""
    a: np.ndarray = np.empty(shape, dtype=dtype, order=order)
    key = id(a)
    _pinned[key] = weakref.finalize(a, _pinned.pop, key, None)
    return a


class Event:
    """``cupy.cuda.Event``: the emulated device has done everything queued, so it is always done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.device = _current_id()

    @property
    def done(self) -> bool:
        return True

    def record(self, stream: Any = None) -> None:
        """Mark the point ``stream`` (default: the current one) has reached."""

    def synchronize(self) -> None:
        """Wait for the event on the host (counted as a sync)."""
        _sync("Event.synchronize")


class Stream:
    """``cupy.cuda.Stream`` on the current device (a queue of work; the emulation runs it at once)."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False) -> None:
        self.device_id = _current_id()
        self.waits = 0

    def record(self, event: Event | None = None) -> Event:
        """An event at the end of the work queued so far."""
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event: Event) -> None:
        """Make later work on this stream wait for ``event`` (on the device: no host wait)."""
        self.waits += 1

    def synchronize(self) -> None:
        """Wait for the stream on the host (counted as a sync)."""
        _sync("Stream.synchronize")

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_null_streams: dict[int, Stream] = {}


def _get_current_stream(device_id: int | None = None) -> Stream:
    """``cupy.cuda.get_current_stream``: the null stream of the current device."""
    key = _current_id() if device_id is None else int(device_id)
    if key not in _null_streams:
        _null_streams[key] = Stream(null=True)
    return _null_streams[key]


def _new(a: np.ndarray) -> ndarray:
    _track(a)
    return ndarray(a, _current_id())


def _unwrap(value: Any, inputs: list[ndarray], name: str) -> Any:
    if isinstance(value, ndarray):
        inputs.append(value)
        return value._a
    if isinstance(value, np.ndarray):
        msg = f"Unsupported type {type(value)} in cupy.{name} (a host array given to a device kernel)"
        raise TypeError(msg)
    if isinstance(value, list | tuple) and any(isinstance(v, ndarray | np.ndarray) for v in value):
        return type(value)(_unwrap(v, inputs, name) for v in value)
    return value


def _wrap(result: Any, inputs: list[ndarray], name: str, out: ndarray | None = None) -> Any:
    if isinstance(result, tuple):
        return tuple(_wrap(r, inputs, name) for r in result)
    if isinstance(result, list):
        return [_wrap(r, inputs, name) for r in result]
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if not isinstance(result, np.ndarray):
        return result
    if out is not None and result is out._a:
        return out
    for x in inputs:
        if result is x._a:
            return x
    for x in inputs:
        if np.may_share_memory(result, x._a):
            return ndarray(result, x._device)  # a view: no kernel, on its base's device
    return _new(result)


def _run(fn: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
         bound: ndarray | None) -> Any:
    inputs: list[ndarray] = [] if bound is None else [bound]
    out = kwargs.get("out")
    uargs = tuple(_unwrap(a, inputs, name) for a in args)
    ukwargs = {k: _unwrap(v, inputs, name) for k, v in kwargs.items()}
    if name in _SYNCING:
        _sync(name)
    result = fn(*uargs, **ukwargs)
    wrapped = _wrap(result, inputs, name, out if isinstance(out, ndarray) else None)
    made = [w for w in (wrapped if isinstance(wrapped, tuple | list) else (wrapped,))
            if isinstance(w, ndarray)]
    fresh = isinstance(out, ndarray) or any(
        not any(np.may_share_memory(w._a, x._a) for x in inputs) for w in made)
    if fresh and name not in _ALLOCATING:
        _launch(inputs, name)
    elif inputs and made and not fresh:
        pass  # a view or the input itself
    return wrapped


def _kernel(fn: Callable[..., Any], name: str, bound: ndarray | None = None) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _run(fn, name, args, kwargs, bound)

    call.__name__ = name
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


def _from_host(name: str) -> Callable[..., Any]:
    numpy_fn = getattr(np, name)

    def create(obj: Any, dtype: Any = None, *args: Any, copy: Any = True, **kwargs: Any) -> ndarray:
        if isinstance(obj, ndarray):
            if name == "array":
                kwargs["copy"] = copy
            return _run(numpy_fn, name, (obj, dtype, *args), kwargs, None)
        host = np.asarray(obj) if not isinstance(obj, np.ndarray) else obj
        _upload(host)
        return _new(np.array(host, dtype=dtype, copy=True, **({"order": kwargs["order"]}
                                                               if "order" in kwargs else {})))

    create.__name__ = name
    return create


class _RandomState:
    """``cupy.random.RandomState`` on the current emulated device (NumPy's PCG64 underneath)."""

    def __init__(self, seed: int | None = None) -> None:
        self._gen = np.random.default_rng(seed)
        self._device = _current_id()

    def _out(self, a: Any) -> ndarray:
        _launch([], "random")
        return _new(np.asarray(a))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None,
                dtype: Any = float) -> ndarray:
        u = self._gen.random(size=size, dtype=np.dtype(dtype))
        return self._out(np.asarray(low + (high - low) * u, dtype=dtype))

    def random_sample(self, size: Any = None, dtype: Any = float) -> ndarray:
        return self._out(self._gen.random(size=size, dtype=np.dtype(dtype)))

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None,
               dtype: Any = float) -> ndarray:
        z = self._gen.standard_normal(size=size, dtype=np.dtype(dtype))
        return self._out(np.asarray(loc + scale * z, dtype=dtype))

    def standard_normal(self, size: Any = None, dtype: Any = float) -> ndarray:
        return self._out(self._gen.standard_normal(size=size, dtype=np.dtype(dtype)))

    def randint(self, low: int, high: int | None = None, size: Any = None,
                dtype: Any = int) -> ndarray:
        return self._out(self._gen.integers(low, high, size=size, dtype=np.dtype(dtype)))

    def permutation(self, n: int) -> ndarray:
        return self._out(self._gen.permutation(n))


def _scatter_add(a: ndarray, slices: Any, value: Any) -> None:
    """``cupyx.scatter_add``: one kernel that accumulates repeated indices."""
    inputs = [a]
    index = _unwrap(slices, inputs, "scatter_add")
    values = _unwrap(value, inputs, "scatter_add")
    _launch(inputs, "scatter_add")
    np.add.at(a._a, index, values)


# --------------------------------------------------------------------------- the module
def _module(name: str, source: Any, names: list[str]) -> types.ModuleType:
    module = types.ModuleType(name)
    exported = []
    for attr in names:
        if attr.startswith("_") or attr in _MISSING_IN_CUPY:
            continue
        value = getattr(source, attr, None)
        if value is None or isinstance(value, types.ModuleType):
            continue
        if isinstance(value, type):
            pass  # dtypes and classes (finfo, iinfo) as they are
        elif callable(value):
            value = _kernel(value, attr)
        setattr(module, attr, value)
        exported.append(attr)
    module.__all__ = exported  # type: ignore[attr-defined]
    return module


def _build() -> dict[str, types.ModuleType]:
    cp = _module("cupy", np, dir(np))
    for name in ("array", "asarray", "ascontiguousarray"):
        setattr(cp, name, _from_host(name))
    cp.ndarray = ndarray  # type: ignore[attr-defined]
    cp.is_available = lambda: True  # type: ignore[attr-defined]
    cp.get_array_module = lambda *args: cp  # type: ignore[attr-defined]
    cp.newaxis = None  # type: ignore[attr-defined]
    cp.__all__ = [n for n in cp.__all__ if n != "ndarray"]  # type: ignore[attr-defined]
    linalg = _module("cupy.linalg", np.linalg, dir(np.linalg))
    fft = _module("cupy.fft", np.fft, dir(np.fft))
    random = types.ModuleType("cupy.random")
    random.RandomState = _RandomState  # type: ignore[attr-defined]
    cuda = types.ModuleType("cupy.cuda")
    device = types.ModuleType("cupy.cuda.device")
    runtime = types.ModuleType("cupy.cuda.runtime")
    device.Device = Device  # type: ignore[attr-defined]
    runtime.getDeviceCount = lambda: DEVICE_COUNT  # type: ignore[attr-defined]
    cuda.Device = Device  # type: ignore[attr-defined]
    cuda.Stream = Stream  # type: ignore[attr-defined]
    cuda.Event = Event  # type: ignore[attr-defined]
    cuda.get_current_stream = _get_current_stream  # type: ignore[attr-defined]
    cuda.device = device  # type: ignore[attr-defined]
    cuda.runtime = runtime  # type: ignore[attr-defined]
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = _scatter_add  # type: ignore[attr-defined]
    cupyx.empty_pinned = _empty_pinned  # type: ignore[attr-defined]
    cp.linalg, cp.fft, cp.random, cp.cuda = linalg, fft, random, cuda  # type: ignore[attr-defined]
    return {"cupy": cp, "cupy.linalg": linalg, "cupy.fft": fft, "cupy.random": random,
            "cupy.cuda": cuda, "cupy.cuda.device": device, "cupy.cuda.runtime": runtime,
            "cupyx": cupyx}


_MODULES: dict[str, types.ModuleType] = {}
_COMPAT: list[Any] = []
_lock = threading.Lock()


def standin() -> types.ModuleType:
    """The stand-in ``cupy`` module (built once)."""
    with _lock:
        if not _MODULES:
            _MODULES.update(_build())
    return _MODULES["cupy"]


def cupyx() -> types.ModuleType:
    """The stand-in ``cupyx`` (only ``scatter_add`` and ``empty_pinned``)."""
    standin()
    return _MODULES["cupyx"]


def _ours(name: str) -> bool:
    return name in ("cupy", "cupyx") or name.startswith(("cupy.", "cupyx.", "array_api_compat.cupy"))


def compat_namespace() -> Any:
    """A private copy of array-api-compat's CuPy wrappers, imported against the stand-in.

    ``sys.modules`` is given the stand-in as ``cupy`` only for the import, then restored exactly:
    a real CuPy (and the real ``array_api_compat.cupy``) imported before or after are unaffected.
    """
    if _COMPAT:
        return _COMPAT[0]
    standin()
    with _lock:
        if _COMPAT:
            return _COMPAT[0]
        import array_api_compat

        saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _ours(name)}
        had_attr = "cupy" in vars(array_api_compat)
        saved_attr = vars(array_api_compat).get("cupy")
        try:
            sys.modules.update(_MODULES)
            _COMPAT.append(importlib.import_module("array_api_compat.cupy"))
        finally:
            for name in [n for n in sys.modules if _ours(n)]:
                del sys.modules[name]
            sys.modules.update(saved)
            if had_attr:
                array_api_compat.cupy = saved_attr  # type: ignore[attr-defined]
            else:
                vars(array_api_compat).pop("cupy", None)
    return _COMPAT[0]


@contextlib.contextmanager
def counting() -> Iterator[Counters]:
    """Reset the counters and yield them (read them after the block)."""
    counters.reset()
    yield counters
