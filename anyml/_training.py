"""The training loop's helpers for :class:`~anyml.model.Sequential`: minibatches, running totals,
the inference switch and the progress bar."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from anyml.backend import Backend, to_numpy

__all__ = ["Data", "Inference", "Progress", "Totals", "batch_starts"]

Array = Any


class Data:
    """Minibatches of ``(X, y)``: host data is indexed on the host and copied one batch at a time;
    arrays of the backend are gathered on the device.

    This is where data enters a model, and so where it is checked (once per call, never per step):

    - ``X`` and ``y`` must hold real numbers (text, complex and object arrays are refused) and have
      the same number of examples, at least one;
    - integer and boolean data (uint8 images, 0/1 masks) become the model's float dtype, except the
      inputs of a model that takes integer ids (``float_inputs=False``, a first ``Embedding``) and
      integer class labels (``int_labels=True``, for a cross-entropy loss), which stay integers;
    - float data must be finite: NaN or infinity in ``X`` or ``y`` is reported as such (rather than
      as a diverging model); for arrays of the backend this costs one synchronization per call.
    """

    def __init__(self, backend: Backend, X: Any, y: Any, owner: str, *, float_inputs: bool = True,
                 int_labels: bool = False) -> None:
        self.backend = backend
        self.owner = f"Sequential.{owner}"
        self.on_device = backend.owns(X) and (y is None or backend.owns(y))
        if self.on_device:
            self.X, self.y = X, y
        else:
            self.X = _host(X, self.owner, "X")
            self.y = None if y is None else _host(y, self.owner, "y")
        if self.X.ndim < 1:
            msg = f"{self.owner}: expected X of shape (n_ex, ...), got {tuple(self.X.shape)}"
            raise ValueError(msg)
        self.n = int(self.X.shape[0])
        if self.y is not None and (self.y.ndim < 1 or int(self.y.shape[0]) != self.n):
            msg = (f"{self.owner}: X has {self.n} examples but y has shape "
                   f"{tuple(self.y.shape)}")
            raise ValueError(msg)
        if self.n == 0:
            msg = f"{self.owner}: X holds no examples"
            raise ValueError(msg)
        self.X_dtype = self._dtype_for(self.X, "X", keep_int=not float_inputs)
        self.y_dtype = None if self.y is None else self._dtype_for(self.y, "y", keep_int=int_labels)
        self._check_finite()
        self._device_order: tuple[np.ndarray, Array] | None = None
        self._labels_checked = False

    def _kind(self, a: Array) -> str:
        """``"f"``, ``"i"`` (signed or unsigned), ``"b"`` or ``"?"`` for another dtype."""
        if isinstance(a, np.ndarray):
            kind = a.dtype.kind
            return "i" if kind in "iu" else kind if kind in "fb" else "?"
        xp = self.backend.xp
        for kind, name in (("f", "real floating"), ("i", "integral"), ("b", "bool")):
            if xp.isdtype(a.dtype, name):
                return kind
        return "?"

    def _dtype_for(self, a: Array, name: str, keep_int: bool) -> str | None:
        """The dtype name a batch of ``a`` is converted to (``None``: as ``asarray`` does)."""
        kind = self._kind(a)
        if kind == "?":
            what = "labels" if name == "y" else "inputs"
            advice = (" (map the classes to integers 0 .. n_classes - 1 first)"
                      if name == "y" else "")
            msg = f"{self.owner}: {name} must hold real numbers ({what}), got dtype {a.dtype}{advice}"
            raise TypeError(msg)
        if kind == "i" and keep_int:
            return "int64"
        return self.backend.dtype_name

    def _check_finite(self) -> None:
        for name, a in (("X", self.X), ("y", self.y)):
            if a is None or self._kind(a) != "f":
                continue
            if self.on_device:
                xp = self.backend.xp
                ok = bool(xp.all(xp.isfinite(a)))
            else:
                ok = bool(np.isfinite(a).all())
            if not ok:
                host = self.backend.to_host(a) if self.on_device else a
                bad = np.flatnonzero(~np.isfinite(host).reshape(self.n, -1).all(axis=1))
                msg = (f"{self.owner}: {name} holds NaN or infinity (in example(s) "
                       f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}); clean the data "
                       f"before training on it")
                raise ValueError(msg)

    def check_labels(self, out: Array, owner: str) -> None:
        """Once per pass: integer class labels must index the output's last axis, and class labels
        must be integers.

        A label out of range would otherwise train silently as an all-zero target. The labels are
        checked on the host (arrays of the backend are copied there once per pass).
        """
        if self._labels_checked or self.y is None or out.ndim < 1:
            return
        self._labels_checked = True
        y = self.backend.to_host(self.y) if self.on_device else self.y
        n_classes = int(out.shape[-1])
        if y.dtype.kind == "f" and y.ndim == out.ndim - 1:
            msg = (f"Sequential.{owner}: the labels y hold floats of shape {tuple(y.shape)}; class "
                   f"labels must be integers in [0, {n_classes}) (y.astype(int)), or one-hot rows "
                   f"of shape {(*tuple(y.shape), n_classes)}")
            raise ValueError(msg)
        if y.dtype.kind not in "iu" or y.size == 0:
            return
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
        Xb = self.backend.asarray(Xb, dtype=self.X_dtype)
        return Xb, None if yb is None else self.backend.asarray(yb, dtype=self.y_dtype)


def batch_starts(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, size)`` of each training batch of ``n`` examples: ``batch_size`` each, the last one
    smaller, but never a last batch of one example, which joins the batch before it (a batch of one
    has no batch statistics: batch normalization refuses it)."""
    starts = [(start, min(batch_size, n - start)) for start in range(0, n, batch_size)]
    if len(starts) > 1 and starts[-1][1] == 1:
        start, size = starts[-2]
        starts[-2:] = [(start, size + 1)]
    return starts


def _host(a: Any, owner: str, name: str) -> np.ndarray:
    """Host data (an array of any backend, a list) as a NumPy array, with a clear error for ragged
    lists and objects."""
    try:
        host = to_numpy(a) if hasattr(a, "shape") else np.asarray(a)
    except (ValueError, TypeError) as exc:
        msg = f"{owner}: {name} is not an array of numbers ({exc})"
        raise TypeError(msg) from exc
    return host


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
