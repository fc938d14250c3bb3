"""A layer's pool of kernel workspaces (see :mod:`anyml.functional._workspace`).

A layer whose kernels take a ``workspace`` borrows one from its pool for each forward pass and gives
it back once that pass's backward has run (or at once, when the pass is not retained). Retained
passes waiting for their backward each hold their own workspace, so the contract of one forward /
backward pair per workspace holds however forwards and backwards interleave, while a plain training
loop keeps reusing the same memory.

On a backend whose library pools device memory itself (:attr:`Backend.pools_memory`: CuPy, PyTorch
on CUDA) the pool keeps no idle workspace: each pass's scratch arrays go back to the library's pool
once its backward has run, so no memory sits idle in a layer between steps.
"""

from __future__ import annotations

from typing import Any

from anyml.backend import Backend
from anyml.layers.base import LayerBase

__all__ = ["PooledWorkspaces", "WorkspacePool"]

Workspace = dict[Any, Any]


class WorkspacePool:
    """At most ``size`` idle workspaces (dicts of arrays), handed out newest first.

    Parameters
    ----------
    size : int
        How many idle workspaces are kept; one given back to a full pool is dropped.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._idle: list[Workspace] = []

    def take(self) -> Workspace:
        """An idle workspace, or a new empty one when none is idle."""
        return self._idle.pop() if self._idle else {}

    def give_back(self, ws: Workspace) -> None:
        """Return ``ws`` (no longer used by any retained pass) to the pool."""
        if len(self._idle) < self.size:
            self._idle.append(ws)

    def clear(self) -> None:
        """Drop every idle workspace (their arrays belong to the backend the layer is leaving)."""
        self._idle.clear()


class PooledWorkspaces(LayerBase):
    """A layer with a :class:`WorkspacePool` in ``self._workspaces``, made anew by :meth:`to`.

    The pool keeps two idle workspaces, or none where the backend pools memory itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workspaces = self._new_pool()

    def _new_pool(self) -> WorkspacePool:
        return WorkspacePool(0 if self.backend.pools_memory else 2)

    def to(self, backend: str | Backend) -> PooledWorkspaces:
        """Move the layer to another backend (see :meth:`LayerBase.to`); idle workspaces are dropped."""
        super().to(backend)
        self._workspaces = self._new_pool()
        return self
