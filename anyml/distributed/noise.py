"""Per-example noise under data parallelism: dropout masks, attention dropout, RBM samples.

Layers draw per-example noise through :func:`draw` instead of ``backend.rng`` directly. Outside a
data-parallel step nothing changes: :func:`draw` is ``backend.rng``. Inside one (set by
:meth:`Sequential.fit <anyml.model.Sequential.fit>` with :func:`example_split`), each rank holds rows
``start:stop`` of a global batch of ``total`` examples, and

- by default each rank draws its own rows' noise from its **own** generator (seeded from the shared
  seed and the rank), so that ranks differ and the shared generator, which drives parameter-changing
  randomness such as SET rewiring, advances alike on every rank;
- with ``deterministic=True`` every rank draws the noise of the **whole** global batch from the
  shared generator and keeps its rows: the masks are bit-identical to one process's, at the cost of
  drawing ``size`` times as many numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyml.backend import Array

if TYPE_CHECKING:
    from anyml.backend import Backend, RandomGenerator

__all__ = ["ExampleSplit", "draw", "example_split"]


@dataclass(frozen=True)
class ExampleSplit:
    """This rank's rows ``start:stop`` of a global batch of ``total`` examples on ``backend``."""

    backend: Backend
    start: int
    stop: int
    total: int
    deterministic: bool
    rank_rng: RandomGenerator | None


_split: contextvars.ContextVar[ExampleSplit | None] = contextvars.ContextVar("anyml_example_split",
                                                                            default=None)


@contextlib.contextmanager
def example_split(split: ExampleSplit | None) -> Iterator[None]:
    """Draw per-example noise for ``split`` inside a ``with`` block (``None``: as one process)."""
    token = _split.set(split)
    try:
        yield
    finally:
        _split.reset(token)


def draw(backend: Backend, method: str, shape: Sequence[int], *args: Any, **kwargs: Any) -> Array:
    """``backend.rng.<method>(shape, ...)`` for per-example noise whose first axis is the examples.

    ``method`` is ``"bernoulli"``, ``"uniform"`` or ``"normal"``; see the module docstring for what
    changes inside a data-parallel step.
    """
    split = _split.get()
    shape = tuple(int(d) for d in shape)
    if split is None or split.backend is not backend or not shape or \
            shape[0] != split.stop - split.start:
        return getattr(backend.rng, method)(shape, *args, **kwargs)
    if split.deterministic:
        full = getattr(backend.rng, method)((split.total, *shape[1:]), *args, **kwargs)
        return full[split.start:split.stop, ...]
    rng = split.rank_rng if split.rank_rng is not None else backend.rng
    return getattr(rng, method)(shape, *args, **kwargs)
