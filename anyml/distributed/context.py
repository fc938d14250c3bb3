"""The current communicator: what :meth:`Sequential.fit <anyml.model.Sequential.fit>` and synchronized
batch normalization use when none is given.

From the most to the least specific: the innermost ``with use_comm(...)`` (per thread, so each rank of
a :class:`~anyml.distributed.ThreadGroup` has its own), then :func:`set_comm` (which
:func:`~anyml.distributed.init` calls), then a :class:`~anyml.distributed.SingleProcess`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from anyml.distributed.base import Communicator
from anyml.distributed.single import SingleProcess

__all__ = ["get_comm", "set_comm", "use_comm"]

_SINGLE = SingleProcess()
_scoped: contextvars.ContextVar[Communicator | None] = contextvars.ContextVar("anyml_comm",
                                                                             default=None)
_global: Communicator | None = None


def get_comm() -> Communicator:
    """The communicator in force (a :class:`~anyml.distributed.SingleProcess` by default)."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    return _global if _global is not None else _SINGLE


def set_comm(comm: Communicator | None) -> None:
    """Make ``comm`` the process-wide communicator (``None``: back to a single process)."""
    global _global
    if comm is not None and not isinstance(comm, Communicator):
        msg = f"set_comm: expected a Communicator or None, got {type(comm).__name__}"
        raise TypeError(msg)
    _global = comm


@contextlib.contextmanager
def use_comm(comm: Communicator) -> Iterator[Communicator]:
    """Make ``comm`` the current communicator inside a ``with`` block (this thread only)."""
    if not isinstance(comm, Communicator):
        msg = f"use_comm: expected a Communicator, got {type(comm).__name__}"
        raise TypeError(msg)
    token = _scoped.set(comm)
    try:
        yield comm
    finally:
        _scoped.reset(token)
