r"""Data-parallel training steps for :class:`~anyml.model.Sequential` (``fit(..., comm=...)``).

Every rank holds the whole model and the whole data set (or the same view of it). For each global
minibatch of ``B`` examples, drawn in the same epoch order on every rank (the order comes from the
model's shared seed), rank ``r`` of ``R`` takes the contiguous rows

.. math::

    [\lfloor r B / R \rfloor, \lfloor (r + 1) B / R \rfloor)

so the shares differ by at most one example, an uneven last batch needs nothing special, and a rank
with no example in a batch still runs the (empty) step and joins every collective operation. After
the backward pass the gradients are summed over the ranks (:mod:`~anyml.distributed.buckets`) and
every rank applies the same update, so the parameters stay identical.

**Losses.** With ``reduction="sum"`` the summed gradients are the gradient of the global batch's
loss as they are. With ``reduction="mean"`` each rank's loss gradient (divided by its own ``n_r``
examples) is multiplied by :math:`n_r / N`, with :math:`N` the examples of the whole step (all ranks,
and all batches of a gradient-accumulation window), so that the sum is the gradient of the mean over
the :math:`N` examples, as one process computes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from anyml.backend import Array, dtype_name
from anyml.distributed.base import Communicator
from anyml.distributed.buckets import DEFAULT_BUCKET_BYTES, GradientReducer, param_layers
from anyml.distributed.noise import ExampleSplit, example_split

__all__ = ["DataParallel", "shard"]


def shard(n: int, rank: int, size: int, offset: int = 0) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[lo, hi)`` of ``n`` items starting at ``offset``."""
    return offset + (rank * n) // size, offset + ((rank + 1) * n) // size


class DataParallel:
    """The distributed parts of one :meth:`Sequential.fit <anyml.model.Sequential.fit>` call.

    Parameters
    ----------
    model : Sequential
    comm : Communicator
    deterministic : bool
        Draw per-example noise for the global batch and slice it (bit-identical to one process;
        see :mod:`~anyml.distributed.noise`).
    bucket_bytes : int
        The gradient bucket cap.
    """

    def __init__(self, model: Any, comm: Communicator, *, deterministic: bool = False,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.model = model
        self.comm = comm
        self.deterministic = bool(deterministic)
        self.distributed = comm.size > 1
        self.reducer = GradientReducer(model.layers, comm, bucket_bytes)
        self._prepared = False
        self._rank_rng: Any = None

    # ------------------------------------------------------------------ set-up
    def sync_random_state(self) -> None:
        """Make the shared generators equal on every rank (they are when every rank was given the
        same seed; with no seed, rank 0's state is broadcast and the device generator reseeded).

        Called before the first epoch's order is drawn; once per :class:`DataParallel`.
        """
        if not self.distributed or self._rank_rng is not None:
            return
        backend, comm = self.model.backend, self.comm
        state = backend.host_rng.bit_generator.state
        states = comm.allgather_object(_jsonable(state))
        if any(s != states[0] for s in states[1:]):
            backend.host_rng.bit_generator.state = _from_json(states[0])
            seed = comm.broadcast_object(int(np.random.SeedSequence().generate_state(1)[0]))
            backend.rng.seed(seed)
        digest = hashlib.sha256(json.dumps(states[0], sort_keys=True).encode()).digest()
        entropy = int.from_bytes(digest[:16], "little")
        seed = int(np.random.SeedSequence(entropy, spawn_key=(comm.rank,)).generate_state(1)[0])
        self._rank_rng = type(backend.rng)(backend, seed)

    def _build_and_broadcast(self, data: Any, first: int) -> None:
        """Create lazy parameters (one example, inference mode: no noise drawn, no statistics
        moved) and copy rank 0's parameters to every rank."""
        layers = [p for layer in self.model.layers for p in param_layers(layer)]
        if not all(p.is_initialized for p in layers):
            X1, _ = data.one(first, 1)
            with self.model._inference():
                self.model.forward(X1, retain_derived=False)
        arrays = [p.parameters[k] for p in layers for k in sorted(p.parameters)]
        if arrays:
            self.comm.broadcast(arrays, root=0)

    # ------------------------------------------------------------------ a step
    @contextlib.contextmanager
    def _noise(self, lo: int, hi: int, start: int, stop: int) -> Iterator[None]:
        if not self.distributed:
            yield
            return
        split = ExampleSplit(self.model.backend, lo - start, hi - start, stop - start,
                             self.deterministic, self._rank_rng)
        with example_split(split):
            yield

    def step(self, data: Any, order: np.ndarray | None, start: int, stop: int, window: int,
             reduce_now: bool, loss: Any) -> tuple[Array, dict[str, Array], int, Array]:
        """Forward and backward of this rank's share of the global batch ``[start, stop)``.

        Parameters
        ----------
        window : int
            :math:`N`, the examples of the whole gradient-accumulation window on all ranks.
        reduce_now : bool
            The last batch of the window: sum the gradients across ranks after the backward pass.

        Returns
        -------
        (loss_sum, metric_sums, n_local, value)
            This rank's summed per-example loss, the sum of each metric (by name) and example
            count, and the loss value of its share.
        """
        model = self.model
        if self.distributed and not self._prepared:
            self.sync_random_state()
            self._build_and_broadcast(data, int(order[start]) if order is not None else start)
            self._prepared = True
        lo, hi = shard(stop - start, self.comm.rank, self.comm.size, start)
        Xb, yb = data.batch(order, lo, hi - lo)
        n_local = hi - lo
        with self._noise(lo, hi, start, stop):
            out = model._train_forward(Xb)
        xp = model.backend.xp
        if n_local > 0:
            data.check_labels(out, "fit")
            # labels checked where they entered; the loss shares its work between value and gradient
            value, grad = loss.loss_and_grad(yb, out, **model._checked)
            if loss.reduction == "mean" and n_local != window:
                grad = grad * (n_local / window)
            loss_sum = model._per_example_sum(value, out)
            metric_sums = model._metric_sums(yb, out)
        else:
            value = xp.zeros((), dtype=out.dtype, device=out.device)
            grad = xp.zeros_like(out)
            loss_sum = value
            metric_sums = {m.name: value for m in model.metrics}
        self._backward(grad, reduce_now and self.distributed)
        return loss_sum, metric_sums, n_local, value

    def _backward(self, dz: Array, reduce: bool) -> None:
        model = self.model
        last = len(model.layers) - (1 if model._fused_softmax else 0)
        if reduce:
            self.reducer.begin()
        for i in range(last - 1, -1, -1):
            dz = model.layers[i].backward(dz)
            if reduce:
                self.reducer.layer_done(i)
        if reduce:
            self.reducer.finish()

    # ------------------------------------------------------------------ totals
    def global_loss(self, loss_sum: Array, window: int) -> float:
        """The step's loss over every rank, per example for mean losses (for ``KingScheduler``)."""
        xp = self.model.backend.xp
        total = xp.reshape(xp.asarray(loss_sum, copy=True), (1,))
        if self.distributed:
            self.comm.allreduce([total])
        value = float(total[0])
        return value / window if self.model.loss.reduction == "mean" else value

    def reduce_totals(self, totals: Any, n_total: int) -> Any:
        """The epoch's totals summed over the ranks (every rank gets the same logs)."""
        return reduce_totals(self.model.backend, self.comm, totals, n_total)


def reduce_totals(backend: Any, comm: Communicator, totals: Any, n_total: int) -> Any:
    """Sum a :class:`~anyml._training.Totals` over the ranks in one collective; ``n`` becomes
    ``n_total``."""
    if comm.size == 1:
        return totals
    xp = backend.xp
    keys: list[str] = []
    for names in comm.allgather_object(list(totals.sums)):  # a rank without examples has none
        keys.extend(k for k in names if k not in keys)
    parts = [xp.reshape(xp.asarray(totals.sums.get(k, 0.0), dtype=backend.dtype,
                                   device=backend.device), (1,)) for k in keys]
    if parts:
        buf = xp.concat(parts)
        comm.allreduce([buf])
        totals.sums = {k: buf[i] for i, k in enumerate(keys)}
    totals.n = n_total
    return totals


def _jsonable(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": state.dtype.name}
    if isinstance(state, np.integer):
        return int(state)
    return state


def _from_json(state: Any) -> Any:
    if isinstance(state, dict):
        if "__ndarray__" in state:
            return np.asarray(state["__ndarray__"], dtype=state["dtype"])
        return {k: _from_json(v) for k, v in state.items()}
    return state


def gather_rows(backend: Any, comm: Communicator, outs: list[Array], n: int, lo: int) -> Array:
    """Every rank's rows ``[lo, lo + len)`` (the concatenated ``outs``) of an ``(n, ...)`` output,
    on every rank: each rank writes its rows into zeros and the buffers are summed (adding zeros is
    exact)."""
    xp = backend.xp
    mine = None if not outs else (outs[0] if len(outs) == 1 else xp.concat(outs, axis=0))
    meta = comm.allgather_object(None if mine is None else
                                 [list(mine.shape[1:]), dtype_name(mine.dtype)])
    known = next(m for m in meta if m is not None)
    full = xp.zeros((n, *known[0]), dtype=getattr(xp, known[1]), device=backend.device)
    if mine is not None and int(mine.shape[0]):
        full[lo:lo + int(mine.shape[0]), ...] = mine
    comm.allreduce([full])
    return full
