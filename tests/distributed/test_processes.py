"""Real processes: the same script under ``python``, ``mpiexec -n 2 python -m mpi4py`` and
``torchrun --nproc-per-node=2`` (gloo) trains the same model to 1e-10, and a rank that raises ends the
job with its error within 30 seconds.

pytest itself never runs under a launcher: each test starts one. Under CI (``CI=true``) a missing
engine is a failure, elsewhere a skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_worker.py"
ROOT = HERE.parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The launches run one after another on one test worker (``--dist loadgroup``), so that two jobs
# never compete for the cores, nor two torchrun rendezvous for a free port.
pytestmark = pytest.mark.xdist_group("process-launches")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true: the real-process tests must run; see the README's test "
                    f"command, which installs mpi4py and mpich)")
    pytest.skip(what)


def _mpiexec() -> list[str]:
    if importlib.util.find_spec("mpi4py") is None:
        _missing("mpi4py is not installed: pip install mpi4py mpich")
    local = Path(sys.executable).parent / "mpiexec"
    exe = str(local) if local.exists() else shutil.which("mpiexec")
    if exe is None:
        _missing("no mpiexec on PATH: pip install mpich")
    return [str(exe), "-n", "2", sys.executable, "-m", "mpi4py"]


def _torchrun() -> list[str]:
    if importlib.util.find_spec("torch") is None:
        _missing("PyTorch is not installed: pip install -r backends/torch.txt")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


LAUNCHERS = {"mpi": _mpiexec, "torchrun": _torchrun}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_")) and k not in (
               "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(ANYML_BACKEND="numpy", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def _run(cmd: list[str], out: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, str(WORKER), str(out), *extra], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=_env(), check=False)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("one") / "one.npz"
    done = _run([sys.executable], out)
    assert done.returncode == 0, done.stderr
    with np.load(out, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_equal_one(launcher, one_process, tmp_path):
    cmd = LAUNCHERS[launcher]()
    out = tmp_path / "two.npz"
    done = _run(cmd, out)
    assert done.returncode == 0, done.stdout + done.stderr
    with np.load(out, allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    assert int(got["size"]) == 2 and int(one_process["size"]) == 1
    assert str(got["engine"]) == ("mpi" if launcher == "mpi" else "torch")
    np.testing.assert_allclose(got["loss"], one_process["loss"], rtol=1e-10)
    keys = [k for k in one_process if k.startswith("p")]
    assert keys and sorted(keys) == sorted(k for k in got if k.startswith("p"))
    for k in keys:
        scale = float(np.max(np.abs(one_process[k])))
        assert float(np.max(np.abs(got[k] - one_process[k]))) <= 1e-10 * scale, k


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_rank_that_raises_ends_the_job(launcher, tmp_path):
    cmd = LAUNCHERS[launcher]()
    out = tmp_path / "fail.npz"
    done = _run(cmd, out, "--fail-rank", "1", timeout=180)
    ended = time.time()
    assert done.returncode != 0
    assert "class labels must lie in [0, 3)" in done.stdout + done.stderr
    failed_at = float((tmp_path / "fail.npz.failed_at").read_text())
    assert ended - failed_at < 30, f"the job took {ended - failed_at:.1f} s to end after the error"
    assert not out.exists()


def test_mpi_collectives_on_every_cpu_backend():
    cmd = _mpiexec()
    extra = ["--torch"] if importlib.util.find_spec("torch") is not None else []
    done = subprocess.run([*cmd, str(HERE / "_comm_worker.py"), *extra], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, env=_env(), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the two ranks' lines may reach mpiexec's output interleaved
    assert "OK 0 mpi 2" in done.stdout and "OK 1 mpi 2" in done.stdout


# --------------------------------------------------------------------------- CUDA (a GPU machine)
def _needs_cuda(library: str) -> None:
    import anyml

    try:
        anyml.make_backend(library, device="cuda" if library == "torch" else None)
    except (anyml.BackendUnavailableError, ValueError) as exc:
        if os.environ.get("ANYML_REQUIRE_GPU", "") == "1":
            pytest.fail(f"ANYML_REQUIRE_GPU=1 but {library} has no CUDA device: {exc}")
        pytest.skip(f"no CUDA device for {library}: {exc}")


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(("library", "launcher", "procs", "engine"), [
    ("cupy", "mpi", 2, "mpi"),        # CuPy arrays through MPI (CUDA-aware, else staged on the host)
    ("cupy", "mpi", 1, "nccl"),       # NCCL through CuPy, bootstrapped over MPI (one GPU: one rank)
    ("torch", "torchrun", 2, "torch"),  # CUDA tensors over gloo (staged)
])
def test_cuda_runs_equal_one_process(library, launcher, procs, engine, tmp_path):
    _needs_cuda(library)
    extra = ["--backend", library, "--engine", engine]
    if library == "torch":
        extra += ["--device", "cuda"]
    ref = _run([sys.executable], tmp_path / "one.npz", *extra[:2], *extra[4:])
    assert ref.returncode == 0, ref.stderr
    cmd = LAUNCHERS[launcher]()
    cmd = [c if c != "2" else str(procs) for c in cmd]
    cmd = [c if c != "--nproc-per-node=2" else f"--nproc-per-node={procs}" for c in cmd]
    done = _run(cmd, tmp_path / "many.npz", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    want, got = _load(tmp_path / "one.npz"), _load(tmp_path / "many.npz")
    assert int(got["size"]) == procs and str(got["engine"]) == engine
    for k in (k for k in want if k.startswith("p")):
        scale = float(np.max(np.abs(want[k])))
        assert float(np.max(np.abs(got[k] - want[k]))) <= 1e-10 * scale, k
