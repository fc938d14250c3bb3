"""MPI through mpi4py: any MPI library (MPICH or Open MPI wheels, or a cluster's own), launched by
``mpiexec``/``srun``.

Host arrays (NumPy, PyTorch CPU tensors, array-api-strict) go to MPI as buffers that share their
memory (no copy). CuPy arrays go to MPI directly when the library is CUDA-aware (mpi4py reads their
``__cuda_array_interface__``), else through a host copy. Reductions of gradient buckets are
non-blocking (``MPI_Iallreduce``) so that they overlap the rest of the backward pass.

Objects travel as JSON bytes (never pickle). :meth:`MPICommunicator.abort` calls ``MPI_Abort``, which
ends every process of the job; run scripts as ``mpiexec -n N python -m mpi4py script.py`` so that an
uncaught error anywhere aborts the job as well.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from anyml.backend import Array
from anyml.distributed._arrays import assign, host_view, library_of, staged
from anyml.distributed.base import Communicator, Handle

__all__ = ["MPICommunicator", "cuda_aware"]


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        msg = ("the MPI engine needs mpi4py and an MPI library: pip install mpi4py mpich "
               "(or the 'mpi' extra), or build mpi4py against your cluster's MPI")
        raise ImportError(msg) from exc
    return MPI


def cuda_aware(MPI: Any = None) -> bool:
    """Whether the MPI library accepts CUDA device buffers (``MPIX_Query_cuda_support``).

    ``ANYML_MPI_CUDA_AWARE=0`` or ``1`` overrides what the library says.
    """
    forced = os.environ.get("ANYML_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    MPI = _mpi() if MPI is None else MPI
    query = getattr(MPI, "Query_cuda_support", None)
    if query is None:
        return False
    try:
        return bool(query())
    except Exception:  # noqa: BLE001 - a library without the extension
        return False


class MPICommunicator(Communicator):
    """A communicator over an ``mpi4py`` communicator (``MPI.COMM_WORLD`` by default)."""

    name = "mpi"

    def __init__(self, comm: Any = None) -> None:
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = int(local.Get_rank())
        local.Free()
        self._cuda_aware: bool | None = None

    @property
    def library_version(self) -> str:
        """The first line of ``MPI_Get_library_version``."""
        return str(self.MPI.Get_library_version()).strip().splitlines()[0]

    def _device_direct(self, x: Array) -> bool:
        if library_of(x) != "cupy":
            return False
        if self._cuda_aware is None:
            self._cuda_aware = cuda_aware(self.MPI)
        return self._cuda_aware

    # ------------------------------------------------------------------ arrays
    def allreduce_async(self, arrays: Sequence[Array]) -> Handle:
        arrays = list(arrays)
        MPI = self.MPI
        requests, writebacks = [], []
        for a in arrays:
            if self._device_direct(a):
                _sync_cupy()
                requests.append(self.comm.Iallreduce(MPI.IN_PLACE, a, op=MPI.SUM))
                continue
            buf = host_view(a)
            if buf is None:
                buf = staged(a)
                writebacks.append((a, buf))
            requests.append(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM))

        def wait() -> None:
            MPI.Request.Waitall(requests)
            for a, buf in writebacks:
                assign(a, buf)

        return Handle(arrays, wait)

    def broadcast(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        arrays = list(arrays)
        for a in arrays:
            if self._device_direct(a):
                _sync_cupy()
                self.comm.Bcast(a, root=root)
                continue
            buf = host_view(a)
            if buf is None:
                buf = staged(a)
                self.comm.Bcast(buf, root=root)
                if self.rank != root:
                    assign(a, buf)
            else:
                self.comm.Bcast(buf, root=root)
        return arrays

    # ------------------------------------------------------------------ bytes
    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        n = np.array([len(data) if self.rank == root and data is not None else 0], dtype=np.int64)
        self.comm.Bcast(n, root=root)
        buf = np.empty(int(n[0]), dtype=np.uint8)
        if self.rank == root and data is not None:
            buf[:] = np.frombuffer(data, dtype=np.uint8)
        self.comm.Bcast(buf, root=root)
        return buf.tobytes()

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        mine = np.frombuffer(bytes(data), dtype=np.uint8)
        counts = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([mine.size], dtype=np.int64), counts)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out = np.empty(int(counts.sum()), dtype=np.uint8)
        self.comm.Allgatherv(mine, [out, counts, offsets, self.MPI.BYTE])
        return [out[o:o + c].tobytes() for o, c in zip(offsets, counts, strict=True)]

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        if error is not None:
            print(f"anyml: rank {self.rank} of {self.size} failed; aborting the job",
                  file=sys.stderr)
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        self.comm.Abort(code)
        raise SystemExit(code)  # not reached: MPI_Abort ends the process


def _sync_cupy() -> None:
    """MPI reads device memory outside CuPy's stream: finish the queued work first."""
    import cupy

    cupy.cuda.get_current_stream().synchronize()
