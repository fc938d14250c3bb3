"""``guarded(comm)``: turn an error on one rank into the end of the whole job, never a hang."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from anyml.distributed.base import AbortedError, Communicator

__all__ = ["guarded"]


@contextlib.contextmanager
def guarded(comm: Communicator) -> Iterator[Communicator]:
    """Inside the block, an exception on this rank calls ``comm.abort`` (for several ranks).

    The other ranks would otherwise wait forever in the next collective operation. MPI ends every
    process (``MPI_Abort``), ``torchrun`` stops the other workers when this one exits, and a thread
    group raises :class:`~anyml.distributed.AbortedError` on the other ranks and this rank's error
    in the caller. An :class:`~anyml.distributed.AbortedError` (the echo of another rank's failure)
    passes through unchanged.
    """
    try:
        yield comm
    except AbortedError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        if comm.size > 1:
            comm.abort(1, exc)
        raise
