"""Native fast paths and scratch budgets, found from an array's library (see :mod:`anyml.backend`)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from anyml.backend._base import Backend

__all__ = ["backend_class_of", "chunk_bytes", "device_context_free", "fast_path", "register_array_module",
           "register_array_type", "replaceable", "use_fast_paths"]

F = TypeVar("F", bound=Callable[..., Any])

#: Bytes of scratch memory one convolution chunk may take on a CPU: about 2 MB, which stays in the
#: cache between being gathered and being multiplied.
CPU_CHUNK_BYTES = 2 << 20

_ARRAY_TYPES: dict[type, type[Backend] | None] = {}
#: The Backend class of each library by its top-level module, for arrays made before any backend.
_MODULES: dict[str, type[Backend]] = {}
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("anyml_fast_paths", default=True)
#: Backend class -> whether its device context does nothing on every device (see device_context_free).
_CONTEXT_FREE: dict[type, bool] = {}
#: Array type -> (its Backend class or None, whether entering its device context can be skipped).
_DISPATCH: dict[type, tuple[type[Backend] | None, bool]] = {}


def register_array_type(array_type: type, backend_class: type[Backend]) -> None:
    """Record that arrays of ``array_type`` belong to ``backend_class`` (done by each new Backend)."""
    _ARRAY_TYPES[array_type] = backend_class
    _DISPATCH.clear()


def register_array_module(module: str, backend_class: type[Backend]) -> None:
    """Record that arrays whose class lives in the top-level module ``module`` (``"torch"``) belong
    to ``backend_class`` (done by each library's Backend class when it is defined)."""
    _MODULES[module] = backend_class
    _DISPATCH.clear()


def backend_class_of(x: Any) -> type[Backend] | None:
    """The Backend class whose library made ``x`` (``None`` for anything else), cached by type."""
    return backend_class_of_type(type(x))


def backend_class_of_type(kind: type) -> type[Backend] | None:
    """The Backend class whose library makes arrays of type ``kind`` (``None`` if none), cached."""
    try:
        return _ARRAY_TYPES[kind]
    except KeyError:
        pass
    found = None
    for array_type, cls in list(_ARRAY_TYPES.items()):
        if cls is not None and issubclass(kind, array_type):
            found = cls
            break
    else:
        found = _MODULES.get(kind.__module__.split(".")[0])
    _ARRAY_TYPES[kind] = found
    return found


def device_context_free(cls: type[Backend]) -> bool:
    """Whether ``cls`` keeps :class:`Backend`'s no-op ``activate`` / ``device_context`` (NumPy,
    array-api-strict), so that entering them can be skipped; cached by class."""
    try:
        return _CONTEXT_FREE[cls]
    except KeyError:
        pass
    free = all(_first_definer(cls, name) is _root_definer(cls, name)
               for name in ("device_context", "activate"))
    _CONTEXT_FREE[cls] = free
    return free


def _first_definer(cls: type, name: str) -> type | None:
    """The class in ``cls``'s method resolution order whose body defines ``name``."""
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def _root_definer(cls: type, name: str) -> type | None:
    """The last class in ``cls``'s method resolution order that defines ``name`` (the Backend base),
    found without importing it, so that this module stays below ``_base`` in the import order."""
    return next((k for k in reversed(cls.__mro__) if name in vars(k)), None)


def _dispatch(kind: type) -> tuple[type[Backend] | None, bool]:
    """``(backend class, context free)`` for arrays of type ``kind``, cached (see :func:`replaceable`)."""
    try:
        return _DISPATCH[kind]
    except KeyError:
        pass
    cls = _ARRAY_TYPES[kind] if kind in _ARRAY_TYPES else backend_class_of_type(kind)
    entry = (cls, cls is None or device_context_free(cls))
    _DISPATCH[kind] = entry
    return entry


def fast_path(name: str, like: Any) -> Callable[..., Any] | None:
    """The native implementation registered for ``name`` by the library of array ``like``, if any.

    ``None`` when the library registered none, when ``like`` is no backend's array, or inside
    ``use_fast_paths(False)``.
    """
    if not _enabled.get():
        return None
    cls = backend_class_of(like)
    return None if cls is None else cls.fast_paths.get(name)


def chunk_bytes(like: Any) -> int | None:
    """Bytes one chunk of a chunked kernel may take for arrays like ``like``, as the library of
    ``like`` decides for its device (``None``: no limit)."""
    cls = backend_class_of(like)
    if cls is None:
        return CPU_CHUNK_BYTES
    return cls.chunk_bytes(getattr(like, "device", None))


@contextlib.contextmanager
def use_fast_paths(enabled: bool) -> Iterator[None]:
    """Turn native fast paths on or off inside a ``with`` block (off: every call takes the pure path)."""
    token = _enabled.set(bool(enabled))
    try:
        yield
    finally:
        _enabled.reset(token)


def replaceable(fn: F) -> F:
    """Let a backend replace the pure function ``fn`` by a native one registered under its name.

    The wrapper looks up :func:`fast_path` with ``fn.__name__`` and the first argument (an array);
    the native function gets the same arguments, and may return ``NotImplemented`` to hand the call
    back to ``fn``. Either runs in the device context of the first argument (a public entry point of
    :mod:`anyml.functional`); libraries whose context does nothing (NumPy, array-api-strict) skip
    entering it, which is most of this wrapper's cost at small sizes. The pure function stays
    reachable as ``wrapper.pure``, for tests that compare.
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args:
            return fn(*args, **kwargs)
        like = args[0]
        kind = type(like)
        cls, free = _DISPATCH[kind] if kind in _DISPATCH else _dispatch(kind)
        if cls is None:
            return fn(*args, **kwargs)
        native = cls.fast_paths.get(name) if _enabled.get() else None
        if free:
            if native is not None:
                out = native(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            return fn(*args, **kwargs)
        with cls.device_context(getattr(like, "device", None)):
            if native is not None:
                out = native(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            return fn(*args, **kwargs)

    wrapper.pure = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
