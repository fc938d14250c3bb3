"""Minibatches from the host to a backend's device: where they are gathered and how they travel.

``fit`` gathers each minibatch of host data into a buffer that :meth:`Uploader.buffer` gives (plain
memory on a CPU, page-locked ("pinned") memory on a CUDA device), hands it to :meth:`Uploader.upload`,
which starts the copy, and takes the device array from :meth:`Uploader.ready` when the step needs it.

- On a CPU library nothing travels: NumPy uses the gathered buffer itself, torch wraps it
  (``torch.from_numpy``, no copy), array-api-strict copies it as it always did.
- On CuPy (and the emulated device ``gpulike``) the copy runs on a stream of its own from pinned
  memory; :meth:`ready` makes the computing stream wait for it (an event, not a host wait), so the
  copy of the next minibatch, started before the current step's kernels are queued, overlaps them.
- On torch CUDA the same with ``pin_memory`` buffers, a side ``torch.cuda.Stream`` and
  ``non_blocking`` copies.

:attr:`Uploader.prefetches` says whether starting the next copy early is worth it (true where a
copy is asynchronous).
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from anyml.backend._arrays import Array

#: A :class:`~anyml.backend.Backend` (not imported here: the backends import this module).
Backend = Any

__all__ = ["CupyUploader", "TorchCudaUploader", "Uploader"]


class Uploader:
    """Host minibatches to one backend's device, synchronously (the default for CPU libraries).

    Parameters
    ----------
    backend : Backend
        Where the batches go.
    """

    #: Whether :meth:`upload` returns before the copy is done, so that the next batch is worth
    #: uploading one step early.
    prefetches = False

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Host memory to gather one batch into (handed to :meth:`upload`, never reused by the caller)."""
        return np.empty(shape, dtype=dtype)

    def upload(self, host: np.ndarray) -> Any:
        """Start moving ``host`` (a buffer from :meth:`buffer`, filled) to the device; return a ticket."""
        return self.backend.stage(host)

    def ready(self, ticket: Any) -> Array:
        """The device array of a ticket from :meth:`upload`, safe to compute with now."""
        return ticket


class CupyUploader(Uploader):
    """CuPy: pinned host buffers, copies on a stream of their own, an event per batch.

    The copy stream first waits for the work already queued on the computing stream (device memory
    that work frees may be handed to the new batch), and the computing stream waits for the copy's
    event before it uses the batch: no host synchronization either way. Each pinned buffer is kept
    until its copy is done (``Event.done`` asks without waiting).
    """

    prefetches = True

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        with backend.device:
            self.stream = backend.module.cuda.Stream(non_blocking=True)
        self._held: collections.deque[tuple[Any, np.ndarray]] = collections.deque()

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        out: np.ndarray = self.backend._cupyx().empty_pinned(shape, dtype=dtype)  # type: ignore[attr-defined]
        return out

    def upload(self, host: np.ndarray) -> Any:
        cupy = self.backend.module
        with self.backend.device:
            self.stream.wait_event(cupy.cuda.get_current_stream().record())
            out = cupy.empty(host.shape, dtype=host.dtype)
            out.set(host, stream=self.stream)
            done = self.stream.record()
        while self._held and self._held[0][0].done:
            self._held.popleft()
        self._held.append((done, host))
        return out, done

    def ready(self, ticket: Any) -> Array:
        out, done = ticket
        with self.backend.device:
            self.backend.module.cuda.get_current_stream().wait_event(done)
        return out


class TorchCudaUploader(Uploader):
    """torch CUDA: ``pin_memory`` buffers and ``non_blocking`` copies on a side stream.

    PyTorch's pinned-memory allocator keeps a buffer until the copy that reads it is done; the
    device array is marked as used by the computing stream (``record_stream``) so that its memory
    is not handed out again before that stream is done with it.
    """

    prefetches = True

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        torch = backend.module
        self.stream = torch.cuda.Stream(device=backend.device)
        self._pinned: dict[int, Any] = {}

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        torch = self.backend.module
        like = torch.from_numpy(np.empty(0, dtype=dtype))
        pinned = torch.empty(shape, dtype=like.dtype, pin_memory=True)
        host: np.ndarray = pinned.numpy()
        self._pinned[host.__array_interface__["data"][0]] = pinned
        return host

    def upload(self, host: np.ndarray) -> Any:
        torch = self.backend.module
        source = self._pinned.pop(host.__array_interface__["data"][0], None)
        if source is None:
            source = torch.from_numpy(host)
        self.stream.wait_stream(torch.cuda.current_stream(self.backend.device))
        with torch.cuda.stream(self.stream):
            return source.to(self.backend.device, non_blocking=True)

    def ready(self, ticket: Any) -> Array:
        torch = self.backend.module
        current = torch.cuda.current_stream(self.backend.device)
        current.wait_stream(self.stream)
        ticket.record_stream(current)
        return ticket
