"""The NCCL communicator's logic on the CPU: a stand-in for ``cupy.cuda.nccl`` (sums across threads)
checks the unique-id bootstrap over another communicator, the dtype codes, host staging, and bytes
and objects carried in device buffers. The real CUDA run is owed to a machine with GPUs
(``nox -s gpu``)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from anyml.distributed import ThreadGroup
from anyml.distributed.nccl import NCCLCommunicator, nccl_dtype


class _DeviceArray:
    """Host memory posing as a CuPy array (what the communicator touches: data.ptr, size, dtype)."""

    registry: ClassVar[dict[int, np.ndarray]] = {}
    __module__ = "cupy_standin"

    def __init__(self, host: np.ndarray) -> None:
        self.host = np.ascontiguousarray(host)
        self.size, self.dtype = self.host.size, self.host.dtype
        self.data = SimpleNamespace(ptr=id(self.host))
        _DeviceArray.registry[id(self.host)] = self.host

    def get(self) -> np.ndarray:
        return self.host.copy()


class _FakeNccl:
    NCCL_SUM = 0
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_UINT8 = 7, 8, 4, 1
    NCCL_FLOAT16, NCCL_INT32, NCCL_INT8 = 6, 2, 0

    def __init__(self, size: int) -> None:
        self.uids: list[tuple[int, ...]] = []
        self.barrier = threading.Barrier(size)
        self.slots: dict[int, np.ndarray] = {}
        self.calls: list[tuple[str, int]] = []
        nccl = self

        class Comm:
            def __init__(self, ndev: int, uid: tuple[int, ...], rank: int) -> None:
                assert ndev == size
                nccl.uids.append(tuple(uid))
                self.rank = rank

            def allReduce(self, send, recv, count, dtype, op, stream):
                buf = _DeviceArray.registry[send]
                assert send == recv and count == buf.size and op == nccl.NCCL_SUM
                nccl.calls.append(("allReduce", dtype))
                nccl.slots[self.rank] = buf.copy()
                nccl.barrier.wait()
                total = sum(nccl.slots[r] for r in range(size))
                nccl.barrier.wait()
                buf[...] = total

            def bcast(self, buff, count, dtype, root, stream):
                buf = _DeviceArray.registry[buff]
                nccl.slots[self.rank] = buf.copy()
                nccl.barrier.wait()
                value = nccl.slots[root]
                nccl.barrier.wait()
                buf[...] = value

        self.NcclCommunicator = Comm
        self._n = 0

    def get_unique_id(self) -> tuple[int, ...]:
        self._n += 1
        return tuple(range(-3, 5)) if self._n == 1 else (9,) * 8

    def groupStart(self) -> None:
        pass

    def groupEnd(self) -> None:
        pass


def _fake_cupy():
    return SimpleNamespace(asarray=_DeviceArray,
                           cuda=SimpleNamespace(get_current_stream=lambda: SimpleNamespace(
                               ptr=0, synchronize=lambda: None)))


def test_nccl_bootstrap_staging_and_objects():
    nccl = _FakeNccl(3)

    def job(boot):
        comm = NCCLCommunicator(boot, _cupy=_fake_cupy(), _nccl=nccl)
        a = np.arange(4.0) * (comm.rank + 1)
        comm.allreduce([a])  # host array: staged through a device buffer and written back
        b = np.full(2, float(comm.rank), dtype=np.float32)
        comm.broadcast([b], root=2)
        objs = comm.allgather_object({"rank": comm.rank, "s": "é" * comm.rank})
        got = comm.broadcast_object(["from", comm.rank], root=1)
        return comm.rank, comm.size, a, b, objs, got

    for rank, size, a, b, objs, got in ThreadGroup(3).run(job):
        assert size == 3
        np.testing.assert_array_equal(a, np.arange(4.0) * 6)
        np.testing.assert_array_equal(b, np.full(2, 2.0, dtype=np.float32))
        assert objs == [{"rank": r, "s": "é" * r} for r in range(3)]
        assert got == ["from", 1]
        del rank
    # rank 0 drew one id and every rank built its communicator with it
    assert nccl.uids == [tuple(range(-3, 5))] * 3
    assert ("allReduce", nccl.NCCL_FLOAT64) in nccl.calls


def test_nccl_dtypes():
    nccl = _FakeNccl(1)
    assert nccl_dtype(nccl, np.float32) == nccl.NCCL_FLOAT32
    assert nccl_dtype(nccl, "int64") == nccl.NCCL_INT64
    with pytest.raises(TypeError, match="complex128 cannot be reduced"):
        nccl_dtype(nccl, np.complex128)


def test_nccl_bootstrap_must_be_named():
    with pytest.raises(ValueError, match="bootstrap must be"):
        NCCLCommunicator("carrier-pigeon", _cupy=_fake_cupy(), _nccl=_FakeNccl(1))
