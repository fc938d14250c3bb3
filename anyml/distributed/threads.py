"""An in-process group of threads: the communicator for fast tests and documentation.

Each rank is a thread with its own model (and its own backend, so that random generators are not
shared); the ranks exchange references to their arrays through shared slots and two barriers per
operation. Every rank adds the contributions in rank order, so every rank holds bit-identical sums.

Examples
--------
>>> import numpy as np
>>> from anyml.distributed import ThreadGroup
>>> def work(comm):
...     a = np.full(3, comm.rank + 1.0)
...     comm.allreduce([a])
...     return a.tolist()
>>> ThreadGroup(3).run(work)
[[6.0, 6.0, 6.0], [6.0, 6.0, 6.0], [6.0, 6.0, 6.0]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from anyml.backend import Array, namespace_of
from anyml.distributed._arrays import assign, library_of
from anyml.distributed.base import AbortedError, Communicator, DistributedError, Handle

__all__ = ["ThreadCommunicator", "ThreadGroup"]


class _Shared:
    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self.slots: list[Any] = [None] * size
        self.barrier = threading.Barrier(size)
        self.failure: tuple[int, BaseException] | None = None
        self.lock = threading.Lock()


class ThreadCommunicator(Communicator):
    """Rank ``rank`` of a :class:`ThreadGroup` (made by the group, not by hand)."""

    name = "threads"

    def __init__(self, shared: _Shared, rank: int) -> None:
        self._shared = shared
        self.rank = rank
        self.size = shared.size
        self.local_rank = rank

    # ------------------------------------------------------------------ plumbing
    def _wait(self) -> None:
        sh = self._shared
        try:
            sh.barrier.wait(timeout=sh.timeout)
        except threading.BrokenBarrierError:
            if sh.failure is not None:
                rank, error = sh.failure
                msg = f"rank {rank} of {sh.size} failed: {type(error).__name__}: {error}"
                raise AbortedError(msg) from None
            msg = (f"rank {self.rank}: the other ranks did not reach the same collective operation "
                   f"within {sh.timeout:g} s")
            raise DistributedError(msg) from None

    def _exchange(self, value: Any) -> list[Any]:
        """Every rank's ``value``; the caller must :meth:`_wait` once more before writing."""
        sh = self._shared
        sh.slots[self.rank] = value
        self._wait()
        return list(sh.slots)

    # ------------------------------------------------------------------ arrays
    def allreduce_async(self, arrays: Sequence[Array]) -> Handle:
        arrays = list(arrays)
        contributions = self._exchange(arrays)
        if any(len(c) != len(arrays) for c in contributions):
            self._wait()
            msg = (f"allreduce: the ranks passed different numbers of arrays "
                   f"{[len(c) for c in contributions]}")
            raise DistributedError(msg)
        totals = []
        for i in range(len(arrays)):
            total = contributions[0][i]
            for other in contributions[1:]:
                total = total + other[i]
            totals.append(total)
        self._wait()  # every rank has read every contribution: now write
        for a, total in zip(arrays, totals, strict=True):
            _write(a, total)
        return Handle(arrays)

    def broadcast(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        arrays = list(arrays)
        values = self._exchange(arrays)[root]
        copies = [v if self.rank == root else _copy(v) for v in values]
        self._wait()
        if self.rank != root:
            for a, v in zip(arrays, copies, strict=True):
                _write(a, v)
        return arrays

    # ------------------------------------------------------------------ bytes
    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        out = self._exchange(None if data is None else bytes(data))[root]
        self._wait()
        return bytes(out)

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        out = self._exchange(bytes(data))
        self._wait()
        return out

    def barrier(self) -> None:
        self._wait()

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        sh = self._shared
        err = error if error is not None else AbortedError(f"rank {self.rank} aborted (code {code})")
        with sh.lock:
            if sh.failure is None:
                sh.failure = (self.rank, err)
        sh.barrier.abort()
        raise err


def _copy(x: Array) -> Array:
    return namespace_of(x).asarray(x, copy=True)


def _write(target: Array, value: Array) -> None:
    if target is value:
        return
    if library_of(target) == "torch":
        target.copy_(value)
    elif isinstance(target, np.ndarray) or hasattr(target, "__setitem__"):
        target[...] = value
    else:
        assign(target, np.asarray(value))


class ThreadGroup:
    """Run one function on ``size`` ranks, each a thread with its own :class:`ThreadCommunicator`.

    Parameters
    ----------
    size : int
        The number of ranks.
    timeout : float
        Seconds a rank waits at a collective operation for the others before it gives up with a
        :class:`~anyml.distributed.DistributedError` (a guard against a rank that never arrives).
    """

    def __init__(self, size: int, timeout: float = 120.0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            msg = f"ThreadGroup: size must be a positive integer, got {size!r}"
            raise ValueError(msg)
        self.size = size
        self.timeout = float(timeout)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """Call ``fn(comm, *args, **kwargs)`` on every rank, with ``comm`` also the current
        communicator of that thread (:func:`~anyml.distributed.get_comm`); return the results in
        rank order.

        Raises
        ------
        BaseException
            The error of the first rank that failed (the others end with an
            :class:`~anyml.distributed.AbortedError`, which is not re-raised).
        """
        from anyml.distributed.context import use_comm

        shared = _Shared(self.size, self.timeout)
        results: list[Any] = [None] * self.size
        errors: list[BaseException | None] = [None] * self.size

        def main(rank: int) -> None:
            comm = ThreadCommunicator(shared, rank)
            try:
                with use_comm(comm):
                    results[rank] = fn(comm, *args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                errors[rank] = exc
                with shared.lock:
                    if shared.failure is None and not isinstance(exc, AbortedError):
                        shared.failure = (rank, exc)
                shared.barrier.abort()

        threads = [threading.Thread(target=main, args=(r,), name=f"anyml-rank-{r}", daemon=True)
                   for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if shared.failure is not None:
            raise shared.failure[1]
        for err in errors:
            if err is not None:
                raise err
        return results
