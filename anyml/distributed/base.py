"""The communicator protocol: what data-parallel training needs from an engine.

A :class:`Communicator` connects ``size`` processes (or threads), numbered ``0 .. size-1``. Training
needs only a few collective operations from it; each engine (:mod:`~anyml.distributed.mpi`,
:mod:`~anyml.distributed.torch_dist`, :mod:`~anyml.distributed.nccl`,
:mod:`~anyml.distributed.threads`) implements the array operations and the byte operations, and this
base class builds the object operations on the byte ones (JSON, never pickle).

Every rank must call the same collective operations in the same order; a rank that cannot go on calls
:meth:`Communicator.abort`, which ends every rank instead of leaving them waiting.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from anyml.backend import Array, device_of

__all__ = ["AbortedError", "Communicator", "DistributedError", "Handle", "LauncherMismatchError"]


class DistributedError(RuntimeError):
    """A collective operation failed or the ranks disagree."""


class AbortedError(DistributedError):
    """Another rank failed and the group was aborted; the message names that rank and its error."""


class LauncherMismatchError(DistributedError):
    """The launcher started more processes than the communication library sees (different MPIs)."""


class Handle:
    """A pending :meth:`Communicator.allreduce_async`; :meth:`wait` returns the reduced arrays."""

    def __init__(self, arrays: list[Array], wait: Any = None) -> None:
        self._arrays = arrays
        self._wait = wait

    def wait(self) -> list[Array]:
        """Block until the reduction is complete; return its arrays (reduced in place)."""
        if self._wait is not None:
            self._wait()
            self._wait = None
        return self._arrays


class Communicator:
    """A group of ``size`` ranks; this object is rank ``rank`` of it.

    Attributes
    ----------
    rank : int
        This process's number in the group, ``0 .. size-1``.
    size : int
        The number of ranks.
    local_rank : int
        The number among the ranks on the same host (selects the GPU: ``local_rank % n_devices``).
    name : str
        The engine: ``"single"``, ``"threads"``, ``"mpi"``, ``"torch"`` or ``"nccl"``.

    Notes
    -----
    Arrays are reduced and broadcast **in place**: the operations write the result into the arrays
    they are given (and return them, for chaining). Sums run in float64 when the arrays are float64;
    every rank receives the same values.
    """

    name = "base"
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("allreduce_async", "broadcast"):  # CuPy works on the current device
            method = cls.__dict__.get(name)
            if method is not None:
                setattr(cls, name, _on_arrays_device(method))

    # ------------------------------------------------------------------ arrays
    def allreduce(self, arrays: Sequence[Array]) -> list[Array]:
        """Sum each array over the ranks, in place; return the arrays."""
        return self.allreduce_async(arrays).wait()

    def allreduce_async(self, arrays: Sequence[Array]) -> Handle:
        """Start :meth:`allreduce`; the arrays must not be read or written until ``wait()``.

        Engines without non-blocking collectives reduce at once and return a finished handle.
        """
        raise NotImplementedError

    def broadcast(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        """Copy each array of rank ``root`` into the same array of every rank, in place."""
        raise NotImplementedError

    # ------------------------------------------------------------------ bytes and objects
    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        """``root``'s bytes on every rank (the others pass anything, e.g. ``None``)."""
        raise NotImplementedError

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's bytes, in rank order, on every rank."""
        raise NotImplementedError

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """``root``'s JSON-serializable object on every rank."""
        data = _encode(obj) if self.rank == root else None
        return _decode(self.broadcast_bytes(data, root))

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's JSON-serializable object, in rank order, on every rank."""
        return [_decode(b) for b in self.allgather_bytes(_encode(obj))]

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's object in rank order on ``root``; ``None`` on the others."""
        gathered = self.allgather_object(obj)
        return gathered if self.rank == root else None

    # ------------------------------------------------------------------ control
    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        self.allgather_bytes(b"")

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        """End every rank of the group now (``error`` is what made this rank give up)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


def _on_arrays_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a collective on the device of the arrays it is given."""

    @functools.wraps(method)
    def wrapper(self: Any, arrays: Sequence[Array], *args: Any, **kwargs: Any) -> Any:
        with device_of(arrays[0]) if len(arrays) else contextlib.nullcontext():
            return method(self, arrays, *args, **kwargs)

    return wrapper


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _decode(data: bytes) -> Any:
    return json.loads(data.decode())
