"""Data-parallel training on several processes, GPUs and hosts, over engines clusters already run.

The same script trains on one process or on ``N``::

    python train.py
    mpiexec -n 2 python -m mpi4py train.py
    torchrun --nproc-per-node=2 train.py

with, in ``train.py``, :func:`init` before the model is built and a plain ``model.fit(...)``.

- :class:`Communicator`: the protocol (rank, size, local rank, in-place allreduce of a list of arrays,
  broadcast, object gather/broadcast, barrier, abort), with the engines :class:`SingleProcess` (the
  default), :class:`ThreadGroup` (threads of one process, for tests), MPI
  (:class:`~anyml.distributed.mpi.MPICommunicator`, mpi4py), ``torch.distributed``
  (:class:`~anyml.distributed.torch_dist.TorchCommunicator`) and NCCL through CuPy
  (:class:`~anyml.distributed.nccl.NCCLCommunicator`). mpi4py, PyTorch and CuPy are imported only
  when their engine is chosen.
- :func:`init`: the engine the launcher asked for; :func:`get_comm`, :func:`set_comm`,
  :func:`use_comm`: the current communicator.
- :mod:`~anyml.distributed.training`: how ``fit`` splits each global batch and sums gradients
  (:mod:`~anyml.distributed.buckets`); :mod:`~anyml.distributed.noise`: per-example randomness;
  :mod:`~anyml.distributed.resume`: checkpoints that resume on any number of processes;
  :func:`guarded`: failure handling.
"""

from anyml.distributed.base import (
    AbortedError,
    Communicator,
    DistributedError,
    Handle,
    LauncherMismatchError,
)
from anyml.distributed.context import get_comm, set_comm, use_comm
from anyml.distributed.guard import guarded
from anyml.distributed.launch import detect_launcher, init, select_cuda_device
from anyml.distributed.single import SingleProcess
from anyml.distributed.threads import ThreadCommunicator, ThreadGroup

__all__ = [
    "AbortedError",
    "Communicator",
    "DistributedError",
    "Handle",
    "LauncherMismatchError",
    "SingleProcess",
    "ThreadCommunicator",
    "ThreadGroup",
    "detect_launcher",
    "get_comm",
    "guarded",
    "init",
    "select_cuda_device",
    "set_comm",
    "use_comm",
]
