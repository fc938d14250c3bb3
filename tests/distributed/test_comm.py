"""The communicator protocol on the thread group (arrays of every backend, bytes, objects), the
gradient buckets, and the launcher detection of ``init``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anyml.distributed import (
    DistributedError,
    LauncherMismatchError,
    SingleProcess,
    ThreadGroup,
    detect_launcher,
    get_comm,
    init,
    set_comm,
    use_comm,
)
from anyml.distributed import launch as launch_mod
from anyml.distributed.buckets import GradientReducer
from anyml.distributed.training import shard
from anyml.layers import FullyConnected

ROOT = Path(__file__).resolve().parents[2]


def test_allreduce_and_broadcast_in_place(make_backend_for):
    make_backend_for()

    def job(comm):
        be = make_backend_for()
        a = be.asarray(np.arange(6.0).reshape(2, 3) * (comm.rank + 1))
        b = be.asarray(np.full(4, float(comm.rank)))
        same_a, same_b = comm.allreduce([a, b])
        assert same_a is a and same_b is b  # in place
        c = be.asarray(np.full(3, 10.0 * comm.rank))
        comm.broadcast([c], root=2)
        return be.to_host(a), be.to_host(b), be.to_host(c)

    for a, b, c in ThreadGroup(3).run(job):
        np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3) * 6)
        np.testing.assert_array_equal(b, np.full(4, 3.0))
        np.testing.assert_array_equal(c, np.full(3, 20.0))


def test_objects_and_bytes():
    def job(comm):
        got = comm.broadcast_object({"epoch": 3, "big": 2**100} if comm.rank == 1 else None, root=1)
        every = comm.allgather_object([comm.rank, "x" * comm.rank])
        at_root = comm.gather_object(comm.rank * 10, root=0)
        comm.barrier()
        return got, every, at_root, comm.broadcast_bytes(b"\x00\xff" if comm.rank == 0 else None)

    results = ThreadGroup(3).run(job)
    for rank, (got, every, at_root, raw) in enumerate(results):
        assert got == {"epoch": 3, "big": 2**100}
        assert every == [[0, ""], [1, "x"], [2, "xx"]]
        assert at_root == ([0, 10, 20] if rank == 0 else None)
        assert raw == b"\x00\xff"


def test_objects_are_json_only():
    with pytest.raises(TypeError, match="JSON serializable"):
        SingleProcess().broadcast_object(object())


def test_mismatched_collectives_time_out_instead_of_hanging():
    def job(comm):
        if comm.rank == 0:
            comm.barrier()

    with pytest.raises(DistributedError, match="did not reach"):
        ThreadGroup(2, timeout=0.5).run(job)


def test_current_communicator():
    assert get_comm().size == 1 and get_comm().name == "single"
    sizes = ThreadGroup(2).run(lambda comm: (get_comm() is comm, get_comm().size))
    assert sizes == [(True, 2), (True, 2)]
    comm = SingleProcess()
    with use_comm(comm):
        assert get_comm() is comm
    set_comm(comm)
    try:
        assert get_comm() is comm
    finally:
        set_comm(None)
    with pytest.raises(TypeError, match="Communicator"):
        set_comm("mpi")  # type: ignore[arg-type]


def test_shards_are_contiguous_and_cover_everything():
    for n in range(0, 12):
        for size in range(1, 6):
            parts = [shard(n, r, size, offset=5) for r in range(size)]
            assert parts[0][0] == 5 and parts[-1][1] == 5 + n
            assert all(parts[i][1] == parts[i + 1][0] for i in range(size - 1))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_buckets_cap_size_keep_reverse_order_and_reduce_single_gradients_in_place(backend64):
    layers = [FullyConnected(n, backend=backend64) for n in (4, 3, 2)]
    X = backend64.rng.normal((5, 6))
    for layer in layers:
        X = layer.forward(X)
    launched = []

    class Recorder(SingleProcess):
        def allreduce_async(self, arrays):
            launched.append([tuple(a.shape) for a in arrays])
            for a in arrays:
                a *= 2.0
            return super().allreduce_async(arrays)

    dz = backend64.asarray(np.ones((5, 2)))
    for layer in reversed(layers):
        dz = layer.backward(dz)
    before = {id(layer): {k: backend64.to_host(v).copy() for k, v in layer.gradients.items()}
              for layer in layers}
    W_last, W_mid = layers[2].gradients["W"], layers[1].gradients["W"]
    # a cap of 80 bytes, float64: the last layer's b (16 bytes) and W (3x2: 48) share a bucket; the
    # middle layer's b (24) would overflow it, and its W (4x3: 96) is over the cap on its own
    reducer = GradientReducer(layers, Recorder(), bucket_bytes=80)
    reducer.begin()
    for i in reversed(range(3)):
        reducer.layer_done(i)
    reducer.finish()
    assert launched == [[(8,)], [(3,)], [(4, 3)], [(4,)], [(6, 4)]]  # last layer first, b then W
    assert layers[2].gradients["W"] is not W_last  # a view of the fused buffer
    assert layers[1].gradients["W"] is W_mid  # alone in its bucket: reduced in place, no copy
    for layer in layers:
        for k, v in layer.gradients.items():
            np.testing.assert_array_equal(backend64.to_host(v), 2 * before[id(layer)][k])


# --------------------------------------------------------------------------- launchers
@pytest.mark.parametrize(("env", "want"), [
    ({}, (None, None, None, None)),
    ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"},
     ("torchrun", 4, 2, 0)),
    ({"PMI_SIZE": "2", "PMI_RANK": "1", "MPI_LOCALRANKID": "1"}, ("mpi", 2, 1, 1)),
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0",
      "OMPI_COMM_WORLD_LOCAL_RANK": "0"}, ("mpi", 3, 0, 0)),
    ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"},
     ("slurm", 8, 5, 1)),
    ({"SLURM_NTASKS": "8"}, (None, None, None, None)),  # an sbatch script, not an srun step
])
def test_detect_launcher(env, want):
    got = detect_launcher(env)
    assert (got.kind, got.size, got.rank, got.local_rank) == want


def test_init_stops_when_the_library_sees_fewer_processes(monkeypatch):
    # an MPICH mpiexec running an Open MPI build: the environment says 2, the library sees 1
    class Lonely(SingleProcess):
        name = "mpi"
        library_version = "Open MPI v5.0.3"

    monkeypatch.setattr(launch_mod, "_build", lambda engine, launcher, tb: Lonely())
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    with pytest.raises(LauncherMismatchError, match=r"started 2 processes \(PMI_SIZE=2\) but the "
                                                    r"mpi engine sees 1.*Open MPI v5\.0\.3"):
        init()
    assert get_comm().size == 1  # nothing was installed


def test_init_without_a_launcher_is_a_single_process(monkeypatch):
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "RANK",
                 "TORCHELASTIC_RUN_ID", "SLURM_STEP_NUM_TASKS", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    try:
        comm = init()
        assert comm.name == "single" and get_comm() is comm
    finally:
        set_comm(None)
    with pytest.raises(ValueError, match="engine must be one of"):
        init("carrier-pigeon")


def test_engines_are_imported_only_when_chosen():
    code = ("import sys, anyml, anyml.distributed, numpy as np; from anyml.distributed import "
            "ThreadGroup; ThreadGroup(2).run(lambda c: c.allreduce([np.ones(2)])); "
            "print(sorted(m for m in ('mpi4py', 'torch', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "ANYML_BACKEND": "numpy"})
    assert out.stdout.strip() == "[]"


def test_cuda_device_follows_the_local_rank(monkeypatch):
    used = []
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(
        runtime=SimpleNamespace(getDeviceCount=lambda: 4),
        Device=lambda i: SimpleNamespace(use=lambda: used.append(("cupy", i)))))
    fake_torch = SimpleNamespace(cuda=SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 3,
        set_device=lambda i: used.append(("torch", i))))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert launch_mod.select_cuda_device(5) == 2  # torch: 5 % 3
    assert used == [("cupy", 1), ("torch", 2)]  # cupy: 5 % 4
