"""Run by ``test_processes.py`` under a launcher: the collectives of the engine ``init()`` picks, on
arrays of every CPU backend; each rank prints ``OK <rank>`` when every check passed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyml
from anyml import distributed


def check(comm, name: str, device=None) -> None:
    be = anyml.make_backend(name, dtype="float64", device=device, seed=0)
    r, n = comm.rank, comm.size
    a = be.asarray(np.arange(6.0).reshape(2, 3) * (r + 1))
    i = be.asarray(np.array([r, 10 * r]), dtype="int64")
    out = comm.allreduce([a, i])
    assert out[0] is a and out[1] is i
    np.testing.assert_array_equal(be.to_host(a), np.arange(6.0).reshape(2, 3) * n * (n + 1) / 2)
    np.testing.assert_array_equal(be.to_host(i), [sum(range(n)), 10 * sum(range(n))])
    handle = comm.allreduce_async([be.asarray(np.full(3, 1.0 + r))])
    np.testing.assert_array_equal(be.to_host(handle.wait()[0]), np.full(3, n * (n + 1) / 2))
    b = be.asarray(np.full(4, 5.0 * r))
    comm.broadcast([b], root=n - 1)
    np.testing.assert_array_equal(be.to_host(b), np.full(4, 5.0 * (n - 1)))


def main() -> None:
    comm = distributed.init()
    check(comm, "numpy")
    check(comm, "array-api-strict")
    check(comm, "array-api-strict", "device1")
    if "--torch" in sys.argv:
        check(comm, "torch", "cpu")
    strided = np.arange(12.0).reshape(3, 4)[:, ::2].copy(order="F")  # not C-contiguous: staged
    comm.allreduce([strided])
    np.testing.assert_array_equal(strided, np.arange(12.0).reshape(3, 4)[:, ::2] * comm.size)
    assert comm.allgather_object({"r": comm.rank}) == [{"r": k} for k in range(comm.size)]
    assert comm.broadcast_object("hello" if comm.rank == 0 else None) == "hello"
    assert comm.broadcast_bytes(b"" if comm.rank == 0 else None) == b""
    comm.barrier()
    print(f"OK {comm.rank} {comm.name} {comm.size}", flush=True)


if __name__ == "__main__":
    main()
