"""The default communicator: one process, every collective a no-op."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from anyml.distributed.base import Communicator, Handle

__all__ = ["SingleProcess"]


class SingleProcess(Communicator):
    """A group of one: reductions and broadcasts leave the arrays as they are."""

    name = "single"

    def allreduce_async(self, arrays: Sequence[Any]) -> Handle:
        return Handle(list(arrays))

    def broadcast(self, arrays: Sequence[Any], root: int = 0) -> list[Any]:
        return list(arrays)

    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        return b"" if data is None else bytes(data)

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        return [bytes(data)]

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1, error: BaseException | None = None) -> NoReturn:
        if error is not None:
            raise error
        traceback.print_stack(file=sys.stderr)
        raise SystemExit(code)
