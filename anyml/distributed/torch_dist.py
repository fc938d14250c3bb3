"""``torch.distributed``: gloo for CPU arrays, NCCL for CUDA tensors, launched by ``torchrun``.

Arrays of every backend are handed to ``torch.distributed`` as tensors that share their memory where
possible: PyTorch tensors themselves, NumPy (and array-api-strict) arrays through
``torch.from_numpy``, CuPy arrays through DLPack. With the NCCL process group, host arrays are staged
through the GPU of this rank.

A rank that fails under ``torchrun`` calls :meth:`TorchCommunicator.abort`, which prints the error
and exits the process; ``torchrun`` then stops the other workers.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NoReturn

import numpy as np

from anyml.backend import Array
from anyml.distributed._arrays import assign, host_view, library_of, staged
from anyml.distributed.base import Communicator, Handle

__all__ = ["TorchCommunicator"]


class TorchCommunicator(Communicator):
    """A communicator over the default ``torch.distributed`` process group.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        The process group's backend when this call creates it (default: ``"gloo"``). An existing
        default group is used as it is.
    timeout : float
        Seconds a collective waits before the group gives up (default 300).
    """

    name = "torch"

    def __init__(self, backend: str | None = None, timeout: float = 300.0) -> None:
        try:
            import torch
            import torch.distributed as dist
        except ImportError as exc:
            msg = "the torch engine needs PyTorch: pip install torch"
            raise ImportError(msg) from exc
        self.torch, self.dist = torch, dist
        if not dist.is_initialized():
            dist.init_process_group(backend=backend or "gloo", timeout=timedelta(seconds=timeout))
            # a process group left to the interpreter's teardown can abort the process there
            # (its C++ threads outlive it: "terminate called without an active exception")
            atexit.register(_destroy_process_group, dist)
        self.backend = str(dist.get_backend())
        self.rank = int(dist.get_rank())
        self.size = int(dist.get_world_size())
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self._device = (torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl"
                        else torch.device("cpu"))

    def _tensor(self, a: Array) -> tuple[Any, Any]:
        """``(tensor, writeback)``: a tensor sharing ``a``'s memory where it can, else a staged copy
        and the array to write the result back into."""
        torch, lib = self.torch, library_of(a)
        if lib == "torch" and a.device.type == self._device.type:
            return a, None
        if lib == "cupy" and self._device.type == "cuda":
            return torch.from_dlpack(a), None
        view = host_view(a) if self._device.type == "cpu" else None
        if view is not None:
            return torch.from_numpy(view), None
        host = staged(a)
        return torch.from_numpy(host).to(self._device), (a, host)

    def _finish(self, tensor: Any, writeback: Any) -> None:
        if writeback is None:
            return
        a, host = writeback
        result = tensor.cpu().numpy() if tensor.device.type != "cpu" else tensor.numpy()
        if library_of(a) == "torch":
            a.copy_(tensor)
        else:
            assign(a, np.ascontiguousarray(result, dtype=host.dtype))

    # ------------------------------------------------------------------ arrays
    def allreduce_async(self, arrays: Sequence[Array]) -> Handle:
        arrays = list(arrays)
        pending = []
        for a in arrays:
            t, writeback = self._tensor(a)
            work = self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM, async_op=True)
            pending.append((work, t, writeback))

        def wait() -> None:
            for work, t, writeback in pending:
                work.wait()
                self._finish(t, writeback)

        return Handle(arrays, wait)

    def broadcast(self, arrays: Sequence[Array], root: int = 0) -> list[Array]:
        arrays = list(arrays)
        for a in arrays:
            t, writeback = self._tensor(a)
            self.dist.broadcast(t, src=root)
            self._finish(t, writeback)
        return arrays

    # ------------------------------------------------------------------ bytes
    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        torch = self.torch
        n = torch.tensor([len(data) if self.rank == root and data is not None else 0],
                         dtype=torch.int64, device=self._device)
        self.dist.broadcast(n, src=root)
        buf = torch.zeros(int(n.item()), dtype=torch.uint8, device=self._device)
        if self.rank == root and data is not None and len(data):
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.dist.broadcast(buf, src=root)
        return bytes(buf.cpu().numpy().tobytes())

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        torch = self.torch
        n = torch.tensor([len(data)], dtype=torch.int64, device=self._device)
        counts = [torch.zeros_like(n) for _ in range(self.size)]
        self.dist.all_gather(counts, n)
        sizes = [int(c.item()) for c in counts]
        width = max(max(sizes), 1)
        mine = torch.zeros(width, dtype=torch.uint8, device=self._device)
        if data:
            mine[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        out = [torch.zeros_like(mine) for _ in range(self.size)]
        self.dist.all_gather(out, mine)
        return [bytes(o[:s].cpu().numpy().tobytes()) for o, s in zip(out, sizes, strict=True)]

    def barrier(self) -> None:
        self.dist.barrier()

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        if error is not None:
            print(f"anyml: rank {self.rank} of {self.size} failed; ending this worker so that the "
                  f"launcher stops the others", file=sys.stderr)
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


def _destroy_process_group(dist: Any) -> None:
    """Destroy the process group this module made, at exit, if it is still there."""
    if dist.is_initialized():
        dist.destroy_process_group()
