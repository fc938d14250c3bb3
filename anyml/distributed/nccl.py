"""NCCL through CuPy (``cupy.cuda.nccl``), for the cupy backend: one GPU per rank.

NCCL needs its ranks to share a unique id before they can talk; this communicator gets it from rank 0
over a bootstrap channel:

- ``"mpi"``: an :class:`~anyml.distributed.mpi.MPICommunicator` broadcasts it (launch with
  ``mpiexec``);
- ``"tcp"``: a ``torch.distributed.TCPStore`` at ``MASTER_ADDR:MASTER_PORT`` (launch with
  ``torchrun``, which sets them; the store is PyTorch's, so PyTorch must be installed).

CuPy arrays are reduced in place on the current CUDA stream; host arrays are staged through the GPU.
Bytes and objects travel through NCCL as ``uint8`` device buffers.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from anyml.backend import Array
from anyml.distributed._arrays import assign, library_of, staged
from anyml.distributed.base import Communicator, Handle

__all__ = ["NCCLCommunicator", "nccl_dtype"]


_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
           "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8", "int8": "NCCL_INT8"}
_UID_KEY = "anyml/nccl-unique-id"


def nccl_dtype(nccl: Any, dtype: Any) -> int:
    """NCCL's code for a NumPy/CuPy dtype; ``TypeError`` for a dtype NCCL cannot reduce."""
    name = np.dtype(dtype).name
    if name not in _DTYPES:
        msg = f"NCCL: arrays of dtype {name} cannot be reduced; use one of {sorted(_DTYPES)}"
        raise TypeError(msg)
    return int(getattr(nccl, _DTYPES[name]))


def _encode_uid(uid: Any) -> bytes:
    return json.dumps([int(v) for v in uid]).encode()


def _decode_uid(data: bytes) -> tuple[int, ...]:
    return tuple(int(v) for v in json.loads(data.decode()))


class NCCLCommunicator(Communicator):
    """NCCL over CuPy, bootstrapped over MPI or a TCP store.

    Parameters
    ----------
    bootstrap : {"mpi", "tcp"} or Communicator
        How rank 0's NCCL id reaches the others (see the module docstring); a communicator given here
        (of the same ranks) broadcasts it.
    rank, size, local_rank : int, optional
        Needed with ``"tcp"`` (default: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
        environment, as ``torchrun`` sets them).
    """

    name = "nccl"

    def __init__(self, bootstrap: str | Communicator = "mpi", *, rank: int | None = None,
                 size: int | None = None, local_rank: int | None = None,
                 _cupy: Any = None, _nccl: Any = None) -> None:
        if _cupy is None:
            try:
                import cupy
                from cupy.cuda import nccl
            except ImportError as exc:
                msg = ("the nccl engine needs CuPy built with NCCL: pip install cupy-cuda12x "
                       "(and nvidia-nccl-cu12)")
                raise ImportError(msg) from exc
            _cupy, _nccl = cupy, nccl
        self.cupy, self.nccl = _cupy, _nccl
        self._bootstrap: Communicator | None = None
        if isinstance(bootstrap, Communicator):
            self._bootstrap = bootstrap
        elif bootstrap == "mpi":
            from anyml.distributed.mpi import MPICommunicator

            self._bootstrap = MPICommunicator()
        elif bootstrap != "tcp":
            msg = f"NCCLCommunicator: bootstrap must be 'mpi', 'tcp' or a Communicator, got {bootstrap!r}"
            raise ValueError(msg)
        if self._bootstrap is not None:
            self.rank, self.size = self._bootstrap.rank, self._bootstrap.size
            self.local_rank = self._bootstrap.local_rank
            uid_bytes = _encode_uid(self.nccl.get_unique_id()) if self.rank == 0 else None
            uid = _decode_uid(self._bootstrap.broadcast_bytes(uid_bytes, root=0))
        else:
            self.rank = int(os.environ["RANK"]) if rank is None else int(rank)
            self.size = int(os.environ["WORLD_SIZE"]) if size is None else int(size)
            self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank)) if local_rank is None \
                else int(local_rank)
            uid = self._tcp_uid()
        self.comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)

    def _tcp_uid(self) -> tuple[int, ...]:
        from datetime import timedelta

        import torch.distributed as dist

        host = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = int(os.environ.get("MASTER_PORT", "29500")) + 1
        store = dist.TCPStore(host, port, self.size, self.rank == 0, timedelta(seconds=300))
        if self.rank == 0:
            store.set(_UID_KEY, _encode_uid(self.nccl.get_unique_id()).decode())
        return _decode_uid(bytes(store.get(_UID_KEY)))

    def _stream(self) -> int:
        return int(self.cupy.cuda.get_current_stream().ptr)

    def _device_array(self, a: Array) -> tuple[Array, Any]:
        if library_of(a) == "cupy":
            if not a.flags.c_contiguous:
                msg = "NCCL: arrays must be C-contiguous"
                raise ValueError(msg)
            return a, None
        host = staged(a)
        return self.cupy.asarray(host), (a, host)

    # ------------------------------------------------------------------ arrays
    def allreduce_async(self, arrays: Sequence[Array]) -> Handle:
        arrays = list(arrays)
        writebacks = []
        self.nccl.groupStart()
        try:
            for a in arrays:
                d, wb = self._device_array(a)
                self.comm.allReduce(d.data.ptr, d.data.ptr, d.size, nccl_dtype(self.nccl, d.dtype),
                                    self.nccl.NCCL_SUM, self._stream())
                if wb is not None:
                    writebacks.append((d, wb))
        finally:
            self.nccl.groupEnd()

        def wait() -> None:  # later work on the same stream is ordered after the reduction
            for d, (a, host) in writebacks:
                assign(a, d.get().astype(host.dtype, copy=False))

        return Handle(arrays, wait)

    def broadcast(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        arrays = list(arrays)
        for a in arrays:
            d, wb = self._device_array(a)
            self.comm.bcast(d.data.ptr, d.size, nccl_dtype(self.nccl, d.dtype), root, self._stream())
            if wb is not None:
                assign(wb[0], d.get().astype(wb[1].dtype, copy=False))
        return arrays

    # ------------------------------------------------------------------ bytes
    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        n = np.array([len(data) if self.rank == root and data is not None else 0], dtype=np.int64)
        self.broadcast([n], root)
        buf = np.zeros(int(n[0]), dtype=np.uint8)
        if self.rank == root and data:
            buf[:] = np.frombuffer(data, dtype=np.uint8)
        if buf.size:
            self.broadcast([buf], root)
        return buf.tobytes()

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = len(data)
        self.allreduce([sizes])
        width = int(sizes.max()) if sizes.size else 0
        table = np.zeros((self.size, max(width, 1)), dtype=np.uint8)
        table[self.rank, :len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        self.allreduce([table])  # each row is one rank's (the others add zeros)
        return [table[r, :int(sizes[r])].tobytes() for r in range(self.size)]

    def barrier(self) -> None:
        self.allreduce([np.zeros(1, dtype=np.int64)])
        self.cupy.cuda.get_current_stream().synchronize()

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        if error is not None:
            print(f"anyml: rank {self.rank} of {self.size} failed; aborting", file=sys.stderr)
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        try:
            self.comm.abort()
        finally:
            if self._bootstrap is not None and self._bootstrap.name == "mpi":
                self._bootstrap.abort(code)
            os._exit(code)
