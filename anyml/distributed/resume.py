"""Checkpoints that ``fit`` writes while training and resumes from, on any number of processes.

:meth:`Sequential.fit(..., checkpoint=path) <anyml.model.Sequential.fit>` saves the model (parameters,
optimizer and scheduler state, through :func:`anyml.checkpoint.save`) with, in the checkpoint's
metadata, where training stands:

- ``epoch`` and ``step``: the epoch in progress and the global batches of it already applied;
- ``host_rng_epoch_start`` and ``host_rng``: the state of the shared host generator when the epoch
  began (it draws the epoch's order again) and now; ``rng``: the per-step generator's state (dropout
  masks, SET rewiring); ``None`` for CuPy, whose generator state cannot be read, and which is then
  reseeded from the host state;
- ``world_size``, ``batch_size``, ``accumulate``, ``n_examples`` and the ``history`` so far.

Rank 0 writes (atomically: a temporary file, then a rename) while the others wait at a barrier. When
``fit`` starts and the file exists, rank 0 reads it once and broadcasts its bytes; every rank loads
the same state and training continues where it stopped, with the same batches and the same
randomness as an uninterrupted run: the data order and the deterministic noise depend only on the
global batch, not on how many processes share it, so a checkpoint of a 2-process run resumes on 3.
(Per-rank noise without ``deterministic=True`` is drawn afresh after a resume.)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from anyml.distributed.base import Communicator

__all__ = ["Checkpointer", "Position", "get_rng_state", "set_rng_state"]


def get_rng_state(rng: Any) -> Any:
    """The state of a backend generator (``backend.rng``) as JSON data; ``None`` when unreadable."""
    gen = getattr(rng, "_gen", None)
    if isinstance(gen, np.random.Generator):
        return {"numpy": gen.bit_generator.state}
    if gen is not None and type(gen).__module__.split(".")[0] == "torch":
        return {"torch": gen.get_state().tolist()}
    return None


def set_rng_state(rng: Any, state: Any, fallback_seed: int) -> None:
    """Restore :func:`get_rng_state`'s ``state`` (reseed with ``fallback_seed`` where it is None)."""
    gen = getattr(rng, "_gen", None)
    if state is not None and "numpy" in state and isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["numpy"]
    elif state is not None and "torch" in state and gen is not None:
        import torch

        gen.set_state(torch.tensor(state["torch"], dtype=torch.uint8))
    else:
        rng.seed(fallback_seed)


@dataclass
class Position:
    """Where a resumed run starts: ``step`` global batches of epoch ``epoch`` are done."""

    epoch: int
    step: int
    host_rng_epoch_start: Any
    host_rng: Any


class Checkpointer:
    """Writes and restores ``fit``'s checkpoints (see the module docstring).

    Parameters
    ----------
    model : Sequential
    comm : Communicator
    path : str or path-like
    every : int or None
        Also save after every ``every`` global batches (rounded to whole accumulation windows);
        ``None``: at the end of each epoch only.
    """

    def __init__(self, model: Any, comm: Communicator, path: str | PathLike[str],
                 every: int | None, *, batch_size: int, accumulate: int, n: int) -> None:
        self.model, self.comm, self.path = model, comm, os.fspath(path)
        self.every = every
        self.run = {"batch_size": batch_size, "accumulate": accumulate, "n_examples": n}
        self.epoch_start_state: Any = None

    # ------------------------------------------------------------------ saving
    def epoch_begins(self) -> None:
        """Remember the host generator's state before the epoch's order is drawn."""
        self.epoch_start_state = _host_state(self.model)

    def save(self, epoch: int, step: int, history: dict[str, list[float]]) -> None:
        """Save after ``step`` global batches of ``epoch`` (rank 0 writes, every rank waits)."""
        from anyml.checkpoint import save

        model = self.model
        meta = {
            "world_size": self.comm.size,
            "epoch": epoch,
            "step": step,
            "host_rng_epoch_start": self.epoch_start_state if step else _host_state(model),
            "host_rng": _host_state(model),
            "rng": get_rng_state(model.backend.rng),
            "history": history,
            **self.run,
        }
        if self.comm.rank == 0:
            save(model, self.path, metadata=meta)
        self.comm.barrier()

    # ------------------------------------------------------------------ resuming
    def restore(self, history: dict[str, list[float]]) -> Position | None:
        """Load the checkpoint into the model if the file exists; return where to continue."""
        from anyml.checkpoint import load

        comm = self.comm
        exists = comm.broadcast_object(os.path.exists(self.path) if comm.rank == 0 else None)
        if not exists:
            return None
        data = None
        if comm.rank == 0:
            with open(self.path, "rb") as f:
                data = f.read()
        data = comm.broadcast_bytes(data)
        with tempfile.TemporaryDirectory(prefix="anyml-resume-") as folder:  # this rank's copy
            local = os.path.join(folder, "checkpoint")
            with open(local, "wb") as f:
                f.write(data)
            loaded = load(local, backend=self.model.backend)
        meta = loaded.checkpoint_metadata
        if not isinstance(meta, dict) or "epoch" not in meta:
            msg = (f"Sequential.fit: {self.path} is a checkpoint without a training position (saved "
                   f"by save(), not by fit(checkpoint=...)); pass another path or resume=False")
            raise ValueError(msg)
        for key, want in self.run.items():
            if meta.get(key) != want:
                msg = (f"Sequential.fit: {self.path} was written by a run with {key}={meta.get(key)}, "
                       f"this one has {key}={want}; a resumed run must keep the global batch, the "
                       f"accumulation and the data")
                raise ValueError(msg)
        if len(loaded.layers) != len(self.model.layers):
            msg = (f"Sequential.fit: {self.path} holds {len(loaded.layers)} layers, the model "
                   f"{len(self.model.layers)}")
            raise ValueError(msg)
        for mine, saved in zip(self.model.layers, loaded.layers, strict=True):
            mine.set_params(saved.summary())
            (mine.freeze if not saved.trainable else mine.unfreeze)()
        model = self.model
        model.backend.host_rng.bit_generator.state = _from_json(meta["host_rng"])
        set_rng_state(model.backend.rng, meta["rng"],
                      int(model.backend.host_rng.integers(2**63)) if meta["rng"] is None else 0)
        history.clear()
        history.update({k: list(v) for k, v in meta.get("history", {}).items()})
        return Position(int(meta["epoch"]), int(meta["step"]), _from_json(meta["host_rng_epoch_start"]),
                        _from_json(meta["host_rng"]))

    def draw_order(self, position: Position, n: int) -> np.ndarray:
        """The interrupted epoch's order again (from the state at its start), then the generator
        back where it stopped."""
        host = self.model.backend.host_rng
        host.bit_generator.state = position.host_rng_epoch_start
        order = host.permutation(n)
        host.bit_generator.state = position.host_rng
        return order


def _host_state(model: Any) -> Any:
    from anyml.distributed.training import _jsonable

    return _jsonable(model.backend.host_rng.bit_generator.state)


def _from_json(state: Any) -> Any:
    from anyml.distributed.training import _from_json as decode

    return decode(state)
