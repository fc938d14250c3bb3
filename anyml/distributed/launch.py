"""``init()``: pick the engine from the launcher's environment, check it, and make it current.

Launchers announce themselves through environment variables:

- ``torchrun``: ``TORCHELASTIC_RUN_ID`` or ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``;
- MPI launchers: ``OMPI_COMM_WORLD_SIZE`` (Open MPI), ``PMI_SIZE`` (MPICH/Hydra, Intel MPI),
  ``PMIX_RANK`` with ``OMPI_*``/``PMIX_*`` sizes, ``MV2_COMM_WORLD_SIZE`` (MVAPICH);
- Slurm's ``srun``: ``SLURM_STEP_NUM_TASKS`` and ``SLURM_PROCID``.

The size the launcher announces is compared with the size the library sees: an ``mpiexec`` of one MPI
running Python built against another makes every process "rank 0 of 1", which would train ``N``
copies of the model side by side without a word; :func:`init` stops with
:class:`~anyml.distributed.LauncherMismatchError` instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from anyml.distributed.base import Communicator, LauncherMismatchError
from anyml.distributed.context import set_comm
from anyml.distributed.single import SingleProcess

__all__ = ["ENGINES", "Launcher", "detect_launcher", "init", "select_cuda_device"]

ENGINES = ("auto", "single", "mpi", "torch", "nccl")


@dataclass(frozen=True)
class Launcher:
    """What the environment says about how this process was started.

    Attributes
    ----------
    kind : {"torchrun", "mpi", "slurm", None}
        The launcher, ``None`` for a plain ``python``.
    size, rank, local_rank : int or None
        What it announced (``None`` where it said nothing).
    source : str
        The variable the size came from, for messages.
    """

    kind: str | None
    size: int | None = None
    rank: int | None = None
    local_rank: int | None = None
    source: str = ""


def _int(env: Mapping[str, str], *names: str) -> tuple[int | None, str]:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value), name  # type: ignore[arg-type]
            except ValueError:
                continue
    return None, ""


def detect_launcher(env: Mapping[str, str] | None = None) -> Launcher:
    """Read the launcher from ``env`` (default ``os.environ``); see the module docstring."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env or ("WORLD_SIZE" in env and "RANK" in env
                                         and "MASTER_ADDR" in env):
        size, src = _int(env, "WORLD_SIZE")
        rank, _ = _int(env, "RANK")
        local, _ = _int(env, "LOCAL_RANK")
        return Launcher("torchrun", size, rank, local, src)
    size, src = _int(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
    if size is not None:
        rank, _ = _int(env, "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
        local, _ = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                        "MV2_COMM_WORLD_LOCAL_RANK")
        return Launcher("mpi", size, rank, local, src)
    if "PMIX_RANK" in env or "PMI_RANK" in env:
        rank, _ = _int(env, "PMIX_RANK", "PMI_RANK")
        return Launcher("mpi", None, rank, None, "")
    size, src = _int(env, "SLURM_STEP_NUM_TASKS")
    if size is not None and "SLURM_PROCID" in env:
        rank, _ = _int(env, "SLURM_PROCID")
        local, _ = _int(env, "SLURM_LOCALID")
        return Launcher("slurm", size, rank, local, src)
    return Launcher(None)


def _engine_for(launcher: Launcher) -> str:
    if launcher.kind == "torchrun":
        return "torch"
    if launcher.kind in ("mpi", "slurm"):
        return "mpi"
    return "single"


def _build(engine: str, launcher: Launcher, torch_backend: str | None) -> Communicator:
    if engine == "single":
        return SingleProcess()
    if engine == "mpi":
        from anyml.distributed.mpi import MPICommunicator

        return MPICommunicator()
    if engine == "torch":
        from anyml.distributed.torch_dist import TorchCommunicator

        return TorchCommunicator(backend=torch_backend)
    from anyml.distributed.nccl import NCCLCommunicator

    return NCCLCommunicator("tcp" if launcher.kind == "torchrun" else "mpi")


def _mismatch_message(engine: str, launcher: Launcher, comm: Communicator) -> str:
    detail = ""
    if comm.name == "mpi":
        version = getattr(comm, "library_version", "")
        detail = (f" mpi4py uses {version!r}; the mpiexec that launched this job belongs to another "
                  f"MPI library. Launch with the mpiexec of the library mpi4py was built with (for "
                  f"the PyPI wheels: the mpiexec installed next to this Python, "
                  f"{os.path.dirname(sys.executable)}), or rebuild mpi4py against the cluster's MPI.")
    return (f"anyml.distributed.init: the launcher ({launcher.kind}) started {launcher.size} "
            f"processes ({launcher.source}={launcher.size}) but the {engine} engine sees "
            f"{comm.size} (this is rank {comm.rank} of {comm.size}).{detail}")


def init(engine: str = "auto", *, torch_backend: str | None = None,
         set_device: bool = True) -> Communicator:
    """Start the communicator this process was launched for and make it the current one.

    Parameters
    ----------
    engine : {"auto", "single", "mpi", "torch", "nccl"}
        ``"auto"`` reads the launcher from the environment: ``torchrun`` gives ``"torch"``,
        ``mpiexec``/``srun`` give ``"mpi"``, a plain ``python`` gives ``"single"``. ``"nccl"`` (the
        CuPy backend's fastest choice) is never picked automatically; it is bootstrapped over TCP
        under ``torchrun`` and over MPI otherwise.
    torch_backend : {"gloo", "nccl"}, optional
        The ``torch.distributed`` backend of the ``"torch"`` engine (default ``"gloo"``, or
        ``"nccl"`` when the current anyml backend is PyTorch on a CUDA device).
    set_device : bool
        Make device ``local_rank % n_devices`` the current CUDA device of CuPy and PyTorch (those
        already imported, and the one the engine uses), so that backends built afterwards default to
        it. Build the layers after :func:`init`.

    Returns
    -------
    Communicator
        Also the current communicator (:func:`~anyml.distributed.get_comm`).

    Raises
    ------
    LauncherMismatchError
        When the launcher announced more processes than the engine sees.
    ValueError
        For an unknown engine.
    """
    if engine not in ENGINES:
        msg = f"anyml.distributed.init: engine must be one of {ENGINES}, got {engine!r}"
        raise ValueError(msg)
    launcher = detect_launcher()
    chosen = _engine_for(launcher) if engine == "auto" else engine
    if chosen == "torch" and torch_backend is None:
        torch_backend = "nccl" if _current_backend_is_torch_cuda() else "gloo"
    if set_device and launcher.local_rank is not None:
        select_cuda_device(launcher.local_rank, also=("cupy",) if chosen == "nccl" else ())
    comm = _build(chosen, launcher, torch_backend)
    if launcher.size is not None and launcher.size != comm.size:
        raise LauncherMismatchError(_mismatch_message(chosen, launcher, comm))
    if set_device:
        select_cuda_device(comm.local_rank)
    set_comm(comm)
    return comm


def _current_backend_is_torch_cuda() -> bool:
    from anyml.backend import get_backend

    backend = get_backend()
    return backend.name == "torch" and getattr(backend.device, "type", "") == "cuda"


def select_cuda_device(local_rank: int, also: tuple[str, ...] = ()) -> int | None:
    """Make device ``local_rank % n_devices`` current in CuPy and PyTorch where they are imported
    (or named in ``also``); return its index, or ``None`` when no CUDA device is visible."""
    chosen: int | None = None
    for lib in ("cupy", "torch"):
        if lib not in sys.modules and lib not in also:
            continue
        try:
            chosen = _select(lib, local_rank)
        except Exception:  # noqa: BLE001 - no usable CUDA in this library: nothing to select
            continue
    return chosen


def _select(lib: str, local_rank: int) -> int | None:
    if lib == "cupy":
        import cupy

        n = int(cupy.cuda.runtime.getDeviceCount())
        if n == 0:
            return None
        cupy.cuda.Device(local_rank % n).use()
        return local_rank % n
    import torch

    if not torch.cuda.is_available():
        return None
    n = int(torch.cuda.device_count())
    torch.cuda.set_device(local_rank % n)
    return local_rank % n
