"""Watching parameters for NaN and infinity without a host sync per step.

Each update folds a 0-d device flag (all parameters finite?) into the device-side number of the
first step at which it was false; the host reads that number (one sync) only every
:data:`CHECK_EVERY` updates, at the first update, or when asked, and then reports the exact step.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECK_EVERY", "FiniteWatch"]

#: Updates between two reads of the flag by the host.
CHECK_EVERY = 50
_NEVER = 2**62


class FiniteWatch:
    """The first update step whose parameters were not all finite, kept on the device."""

    def __init__(self) -> None:
        self.steps = 0
        self._first_bad: Any = None
        # _NEVER as a 0-d array, made once per namespace and device rather than uploaded at every
        # update (the standard's where takes at most one Python scalar)
        self._never: Any = None
        self._never_on: tuple[Any, Any] | None = None

    def record(self, ok: Any, xp: Any) -> None:
        """Fold the 0-d boolean ``ok`` of this update in (two kernels, no sync)."""
        self.steps += 1
        if self._never_on != (xp, ok.device):
            self._never = xp.full_like(ok, _NEVER, dtype=xp.int64)
            self._never_on = (xp, ok.device)
        bad_now = xp.where(ok, self._never, self.steps)
        self._first_bad = bad_now if self._first_bad is None else xp.minimum(self._first_bad, bad_now)

    def due(self) -> bool:
        """Whether this update is one at which the host reads the flag."""
        return self.steps == 1 or self.steps % CHECK_EVERY == 0

    def first_bad_step(self) -> int | None:
        """The step at which a parameter first held NaN or inf (one sync), or ``None``."""
        if self._first_bad is None:
            return None
        step = int(self._first_bad)
        self._first_bad = None  # reported once; later steps start afresh
        return None if step >= _NEVER else step
