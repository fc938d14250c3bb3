"""The training loop's helpers for :class:`~anyml.model.Sequential`: minibatches, running totals,
the inference switch and the progress bar."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from anyml.backend import Backend, to_numpy

__all__ = ["Data", "Inference", "Progress", "Totals"]

Array = Any


class Data:
    """Minibatches of ``(X, y)``: host data is indexed on the host and copied one batch at a time;
    arrays of the backend are gathered on the device."""

    def __init__(self, backend: Backend, X: Any, y: Any, owner: str) -> None:
        self.backend = backend
        self.on_device = backend.owns(X) and (y is None or backend.owns(y))
        if self.on_device:
            self.X, self.y = X, y
        else:
            self.X = to_numpy(X) if hasattr(X, "shape") else np.asarray(X)
            self.y = None if y is None else (to_numpy(y) if hasattr(y, "shape") else np.asarray(y))
        if self.X.ndim < 1:
            msg = f"Sequential.{owner}: expected X of shape (n_ex, ...), got {tuple(self.X.shape)}"
            raise ValueError(msg)
        self.n = int(self.X.shape[0])
        if self.y is not None and (self.y.ndim < 1 or int(self.y.shape[0]) != self.n):
            msg = (f"Sequential.{owner}: X has {self.n} examples but y has shape "
                   f"{tuple(self.y.shape)}")
            raise ValueError(msg)
        if self.n == 0:
            msg = f"Sequential.{owner}: X holds no examples"
            raise ValueError(msg)
        self._device_order: tuple[np.ndarray, Array] | None = None
        self._labels_checked = False

    def check_labels(self, out: Array, owner: str) -> None:
        """Once per pass: integer class labels must index the output's last axis.

        A label out of range would otherwise train silently as an all-zero target.
        """
        if self._labels_checked or self.y is None or out.ndim < 1:
            return
        self._labels_checked = True
        y = self.backend.to_host(self.y) if self.on_device else self.y
        if y.dtype.kind not in "iu" or y.size == 0:
            return
        n_classes = int(out.shape[-1])
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= n_classes:
            msg = (f"Sequential.{owner}: class labels must lie in [0, {n_classes}) for an output of "
                   f"{n_classes} classes, got labels from {low} to {high}")
            raise ValueError(msg)

    def batch(self, order: np.ndarray | None, start: int, size: int) -> tuple[Array, Array | None]:
        stop = min(start + size, self.n)
        if order is None:
            Xb, yb = self.X[start:stop, ...], None if self.y is None else self.y[start:stop, ...]
        elif self.on_device:
            if self._device_order is None or self._device_order[0] is not order:
                self._device_order = (order, self.backend.asarray(order))
            xp, idx = self.backend.xp, self._device_order[1][start:stop]
            Xb, yb = xp.take(self.X, idx, axis=0), None if self.y is None else xp.take(
                self.y, idx, axis=0)
        else:
            idx = order[start:stop]
            Xb, yb = self.X[idx], None if self.y is None else self.y[idx]
        # the explicit conversion (a no-op for arrays of the backend in its dtype)
        return self.backend.asarray(Xb), None if yb is None else self.backend.asarray(yb)


class Totals:
    """Running sums of loss and hits, kept on the device until they are read."""

    def __init__(self) -> None:
        self.loss: Array = 0.0
        self.correct: Array | None = None
        self.n = 0

    def add(self, loss_sum: Array, correct: Array | None, n: int) -> None:
        self.loss = self.loss + loss_sum
        if correct is not None:
            self.correct = correct if self.correct is None else self.correct + correct
        self.n += n

    def logs(self) -> dict[str, float]:
        logs = {"loss": float(self.loss) / self.n}
        if self.correct is not None:
            logs["accuracy"] = float(self.correct) / self.n
        return logs


class Inference:
    """Switch modules to inference behaviour inside a ``with`` block, then restore each one."""

    def __init__(self, modules: list[Any]) -> None:
        self.modules = modules
        self.saved: list[bool] = []

    def __enter__(self) -> None:
        self.saved = [bool(m.training) for m in self.modules]
        for m in self.modules:
            m.training = False

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.modules, self.saved, strict=True):
            m.training = mode


class Progress:
    """A tqdm bar counting examples (so its rate is examples/s) with the running loss; without
    tqdm, one printed line per epoch."""

    _REFRESH_S = 0.5

    def __init__(self, verbose: bool, total: int, desc: str) -> None:
        self.verbose, self.desc, self.total = verbose, desc, total
        self.start = self.last = time.perf_counter()
        self.bar = None
        if verbose:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="ex",
                                dynamic_ncols=True, leave=True)

    def step(self, n: int, totals: Totals) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.perf_counter()
        if now - self.last >= self._REFRESH_S:
            self.last = now
            self.bar.set_postfix(_fmt(totals.logs()), refresh=False)

    def close(self, logs: dict[str, float]) -> None:
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.set_postfix(_fmt(logs), refresh=True)
            self.bar.close()
            return
        elapsed = time.perf_counter() - self.start
        parts = " - ".join(f"{k} {v:.4f}" for k, v in logs.items())
        rate = self.total / max(elapsed, 1e-9)
        print(f"{self.desc}: {parts} - {rate:.0f} ex/s - {elapsed:.1f}s", file=sys.stdout,
              flush=True)


def _fmt(logs: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.4f}" for k, v in logs.items()}
