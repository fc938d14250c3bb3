"""Memoized geometry: validate and resolve a kernel's shape arguments once per distinct call.

Resolving a convolution's or a pooling's padding, strides and output size is pure Python on small
integers, yet it took tens of microseconds per call, as much as the arithmetic of a small layer. The
kernels therefore resolve them through :func:`memo`, which keeps each distinct argument tuple's
result. Arguments that compare equal but validate differently (``1``, ``True``, ``1.0``) get
different keys, an unhashable argument (a list) is resolved without the memo, and a call that raises
is not remembered, so every error is raised again on the next call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["memo", "spec_key"]

T = TypeVar("T")

#: Distinct argument tuples kept per function before its memo is emptied.
MAX_ENTRIES = 1024

_MEMOS: dict[Callable[..., Any], dict[Any, Any]] = {}


def spec_key(value: Any) -> Any:
    """A hashable key of ``value`` that also records the type of every item.

    Raises
    ------
    TypeError
        If ``value`` (or an item of a tuple or list) is unhashable.
    """
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value  # exact ints and strings stand for themselves: no other key equals them
    if kind is tuple or kind is list:
        if all(type(item) is int for item in value):
            return (kind, tuple(value))  # the common case (shapes, pads), without recursion
        return (kind, tuple(spec_key(item) for item in value))
    if isinstance(value, tuple | list):  # a subclass (a named tuple): keep its type too
        return (kind, tuple(spec_key(item) for item in value))
    hash(value)
    return (kind, value)


def memo(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, remembered by :func:`spec_key` of the arguments (see the module docstring)."""
    try:
        key = spec_key(args)
    except TypeError:
        return fn(*args)
    table = _MEMOS.setdefault(fn, {})
    try:
        return table[key]
    except KeyError:
        pass
    result = fn(*args)
    if len(table) >= MAX_ENTRIES:
        table.clear()
    table[key] = result
    return result
