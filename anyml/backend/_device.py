"""Running code on a backend's device: decorators for the public entry points of anyml.

CuPy allocates and launches on its *current* device, whatever device the arrays involved live on, so
each public entry point enters the device of the backend (or of the arrays) it works with. These
contexts nest and cost a few microseconds; on libraries whose calls all name their device they do
nothing, and where a library keeps :class:`~anyml.backend.Backend`'s no-op context (NumPy,
array-api-strict) the decorators below call straight through without entering one
(:func:`~anyml.backend._fastpath.device_context_free`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from anyml.backend._fastpath import _DISPATCH, _dispatch, backend_class_of, device_context_free

__all__ = ["activated", "device_of", "on_device_of"]

F = TypeVar("F", bound=Callable[..., Any])


def device_of(x: Any) -> contextlib.AbstractContextManager[Any]:
    """The device context of the array ``x`` (a no-op for host data and CPU libraries)."""
    cls = backend_class_of(x)
    if cls is None:
        return contextlib.nullcontext()
    return cls.device_context(getattr(x, "device", None))


def activated(method: F) -> F:
    """Run a method of an object with a ``backend`` attribute inside ``self.backend.activate()``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        backend = self.backend
        if device_context_free(type(backend)):  # NumPy, array-api-strict: nothing to enter
            return method(self, *args, **kwargs)
        with backend.activate():
            return method(self, *args, **kwargs)

    wrapper.__anyml_activated__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def on_device_of(position: int) -> Callable[[F], F]:
    """Run a method inside the device context of its argument at ``position`` (after ``self``)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if len(args) <= position:
                return method(self, *args, **kwargs)
            kind = type(args[position])
            if (_DISPATCH[kind] if kind in _DISPATCH else _dispatch(kind))[1]:  # no context to enter
                return method(self, *args, **kwargs)
            with device_of(args[position]):
                return method(self, *args, **kwargs)

        wrapper.__anyml_activated__ = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
