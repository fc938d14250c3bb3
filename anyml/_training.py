"""The training loop's helpers for :class:`~anyml.model.Sequential`: minibatches, running totals,
the inference switch and the progress bar."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from anyml.backend import Array, Backend, to_numpy

__all__ = ["Batches", "Data", "Inference", "InterruptGuard", "Progress", "Totals", "batch_starts",
           "check_host_labels", "epoch_line"]


class Data:
    """Minibatches of ``(X, y)``: host data is gathered on the host and copied one batch at a time, or
    copied to the device once (``preload``); arrays of the backend are gathered on the device.

    This is where data enters a model, and so where it is checked (once per call, never per step):

    - ``X`` and ``y`` must hold real numbers (text, complex and object arrays are refused) and have
      the same number of examples, at least one;
    - integer and boolean data (uint8 images, 0/1 masks) become the model's float dtype, except the
      inputs of a model that takes integer ids (``float_inputs=False``, a first ``Embedding``) and
      integer class labels (``int_labels=True``, for a cross-entropy loss), which stay integers;
    - float data must be finite: NaN or infinity in ``X`` or ``y`` is reported as such (rather than
      as a diverging model); for arrays of the backend this costs one synchronization per call.

    Transfers of host data (see :mod:`anyml.backend._transfer`):

    - ``preload=True`` copies ``X`` and ``y``, converted, to the device once; ``None`` does so when
      twice their size is at most :meth:`Backend.resident_bytes
      <anyml.backend.Backend.resident_bytes>` (0 on NumPy and array-api-strict: nothing moves
      there). An epoch then copies only its order of examples to the device and gathers the data in
      that order there, once (two kernels); each minibatch is a slice of it.
    - Otherwise each minibatch is gathered, in the dtype it is computed in, straight into a buffer
      of the backend's uploader (pinned memory on a CUDA device) and handed over without another
      copy; where copies are asynchronous, the next minibatch is uploaded while the current one is
      computed on.
    """

    def __init__(self, backend: Backend, X: Any, y: Any, owner: str, *, float_inputs: bool = True,
                 int_labels: bool = False, preload: bool | None = False) -> None:
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
        self.y_dtype = "" if self.y is None else self._dtype_for(self.y, "y", keep_int=int_labels)
        self._check_finite()
        self._device_order: tuple[np.ndarray, Array] | None = None
        self._permuted: tuple[np.ndarray, Array, Array | None] | None = None
        self._labels_checked = False
        #: the labels on the host, for the label check (no device read)
        self._host_y: np.ndarray | None = None if self.on_device else self.y
        self._uploader: Any = None
        self._pending: tuple[Any, int, int, Any, Any] | None = None
        self._prefetch = True
        self.preloaded = False
        if not self.on_device and self._preload_wanted(preload):
            self.X = backend.from_host(self.X, dtype=self.X_dtype)
            if self.y is not None:
                self.y = backend.from_host(self.y, dtype=self.y_dtype)
            self.on_device = self.preloaded = True

    def _preload_wanted(self, preload: bool | None) -> bool:
        if preload is not None:
            return bool(preload)
        need = sum(int(a.size) * np.dtype(d).itemsize
                   for a, d in ((self.X, self.X_dtype), (self.y, self.y_dtype)) if a is not None)
        return 2 * need <= self.backend.resident_bytes()  # the data and one epoch's shuffled copy

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

    def _dtype_for(self, a: Array, name: str, keep_int: bool) -> str:
        """The name of the dtype a batch of ``a`` is converted to."""
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
        y = self._host_y if self._host_y is not None else self.backend.to_host(self.y)
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
        """The examples ``order[start:start + size]`` (or ``start:start + size`` without an order)
        as arrays of the backend, in their dtypes.

        Where the backend copies asynchronously, the batch expected next (the following examples,
        as :func:`batch_starts` cuts them) starts its copy now; after one wrong guess this object
        stops guessing.
        """
        return self._batch(order, start, size, prefetch=True)

    def one(self, start: int, size: int) -> tuple[Array, Array | None]:
        """The examples ``start:start + size``, a one-off batch (nothing is copied ahead)."""
        return self._batch(None, start, size, prefetch=False)

    def _batch(self, order: np.ndarray | None, start: int, size: int,
               prefetch: bool) -> tuple[Array, Array | None]:
        stop = min(start + size, self.n)
        if self.on_device:
            return self._device_batch(order, start, stop)
        if self._uploader is None:
            self._uploader = self.backend.uploader()
        uploader = self._uploader
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is order and pending[1:3] == (start, stop):
            tickets = pending[3:]
        else:
            if pending is not None:  # the next batch was not the one guessed: stop guessing
                self._prefetch = False
            tickets = self._upload(order, start, stop)
        Xb, yb = (None if t is None else uploader.ready(t) for t in tickets)
        if prefetch and uploader.prefetches and self._prefetch and start < stop < self.n:
            nxt = _next_stop(self.n, stop, stop - start)
            self._pending = (order, stop, nxt, *self._upload(order, stop, nxt))
        return Xb, yb

    def _device_batch(self, order: np.ndarray | None, start: int,
                      stop: int) -> tuple[Array, Array | None]:
        if order is None:
            Xb, yb = self.X[start:stop, ...], None if self.y is None else self.y[start:stop, ...]
        elif self.preloaded:  # the epoch's order, gathered once: each batch is a slice of it
            if self._permuted is None or self._permuted[0] is not order:
                self._permuted = None  # the last epoch's copy goes before the next one is made
                xp, idx = self.backend.xp, self.backend.asarray(order)
                self._permuted = (order, xp.take(self.X, idx, axis=0),
                                  None if self.y is None else xp.take(self.y, idx, axis=0))
            _, X, y = self._permuted
            Xb, yb = X[start:stop, ...], None if y is None else y[start:stop, ...]
        else:
            if self._device_order is None or self._device_order[0] is not order:
                self._device_order = (order, self.backend.asarray(order))
            xp, idx = self.backend.xp, self._device_order[1][start:stop]
            Xb, yb = xp.take(self.X, idx, axis=0), None if self.y is None else xp.take(
                self.y, idx, axis=0)
        # the explicit conversion (a no-op for arrays of the backend in its dtype)
        Xb = self.backend.asarray(Xb, dtype=self.X_dtype)
        return Xb, None if yb is None else self.backend.asarray(yb, dtype=self.y_dtype)

    def _upload(self, order: np.ndarray | None, start: int, stop: int) -> tuple[Any, Any]:
        """Gather the host rows of one batch into the uploader's buffers and start their copies."""
        idx = None if order is None else order[start:stop]
        return (self._gathered(self.X, idx, start, stop, self.X_dtype),
                None if self.y is None else self._gathered(self.y, idx, start, stop, self.y_dtype))

    def _gathered(self, a: np.ndarray, idx: np.ndarray | None, start: int, stop: int,
                  dtype_name: str) -> Any:
        dtype = np.dtype(dtype_name)
        if idx is None and a.dtype == dtype and self.backend.owns(a):
            return a[start:stop]  # NumPy computes on the host rows themselves
        buf = self._uploader.buffer((stop - start, *a.shape[1:]), dtype)
        if idx is None:
            np.copyto(buf, a[start:stop], casting="unsafe")
        elif a.dtype == dtype:  # "clip": the indices are a permutation's (and "raise" buffers out)
            np.take(a, idx, axis=0, out=buf, mode="clip")
        else:
            np.copyto(buf, a.take(idx, axis=0), casting="unsafe")
        return self._uploader.upload(buf)


def _next_stop(n: int, start: int, size: int) -> int:
    """Where the batch after one of ``size`` ending at ``start`` is expected to end (a last batch of
    one example joins the one before it, as in :func:`batch_starts`)."""
    stop = min(start + size, n)
    return n if n - stop == 1 else stop


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
    """Running sums of the loss and of each metric, kept on the device until they are read."""

    def __init__(self) -> None:
        self.sums: dict[str, Array] = {}
        self.n = 0

    def add(self, loss_sum: Array, metric_sums: dict[str, Array], n: int) -> None:
        for key, value in (("loss", loss_sum), *metric_sums.items()):
            self.sums[key] = value if key not in self.sums else self.sums[key] + value
        self.n += n

    def logs(self) -> dict[str, float]:
        return {key: float(value) / self.n for key, value in self.sums.items()}


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
    """What ``fit`` shows of an epoch.

    On a terminal, a short tqdm bar (examples done, examples/s, the running loss) that disappears when
    the epoch ends; then, on a terminal or not, one line with the epoch's metrics. Written to a file
    or a pipe, the output is therefore one plain line per epoch.
    """

    _REFRESH_S = 0.5

    def __init__(self, verbose: bool, total: int | None, desc: str) -> None:
        self.verbose, self.desc, self.total = verbose, desc, total
        self.start = self.last = time.perf_counter()
        self.seen = 0
        self.bar = None
        if verbose and _is_terminal(sys.stderr):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="ex", leave=False, dynamic_ncols=True,
                                bar_format="{desc} {percentage:3.0f}%|{bar:16}| {n_fmt}/{total_fmt} "
                                           "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def step(self, n: int, totals: Totals) -> None:
        self.seen += n
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.perf_counter()
        if now - self.last >= self._REFRESH_S:
            self.last = now
            loss = totals.sums.get("loss")
            if loss is not None:
                self.bar.set_postfix_str(f"loss {float(loss) / totals.n:.4f}", refresh=False)

    def close(self, logs: dict[str, float], note: str = "") -> None:
        if self.bar is not None:
            self.bar.close()
        if self.verbose:
            print(epoch_line(self.desc, self.seen, time.perf_counter() - self.start, logs, note),
                  file=sys.stdout, flush=True)


def epoch_line(desc: str, n: int, elapsed: float, logs: dict[str, float], note: str = "") -> str:
    """``epoch 3/10 - 1437 ex in 0.8s (1796 ex/s) - loss 0.1234 - accuracy 0.9650``."""
    rate = n / max(elapsed, 1e-9)
    parts = [f"{desc} - {n} ex in {elapsed:.1f}s ({rate:.0f} ex/s)",
             *(f"{k} {v:.4f}" for k, v in logs.items())]
    return " - ".join(parts) + (f" ({note})" if note else "")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Batches:
    """Minibatches ``(X, y)`` from an iterable, a re-iterable or a function returning an iterator.

    Each epoch starts over when the source can (a list, a data loader, a function); a one-shot iterator
    (a generator object) is read on from where the last epoch stopped. ``steps`` caps the batches per
    epoch.
    """

    def __init__(self, backend: Backend, source: Any, steps: int | None, owner: str) -> None:
        self.backend, self.source, self.steps, self.owner = backend, source, steps, owner
        self._iterator: Iterator[Any] | None = None
        if not (callable(source) or hasattr(source, "__iter__")):
            msg = (f"Sequential.{owner}: expected arrays X and y, or an iterable of (X, y) "
                   f"minibatches, got {type(source).__name__}")
            raise TypeError(msg)

    def _epoch_iterator(self) -> Iterator[Any]:
        if callable(self.source) and not hasattr(self.source, "__iter__"):
            return iter(self.source())
        it = iter(self.source)
        if it is self.source:  # a one-shot iterator: keep reading where the last epoch stopped
            if self._iterator is None:
                self._iterator = it
            return self._iterator
        return it

    def epoch(self) -> Iterator[tuple[Array, Array, np.ndarray | None]]:
        """The epoch's batches as backend arrays, with the host labels when they came from the host."""
        it = self._epoch_iterator()
        count = 0
        while self.steps is None or count < self.steps:
            try:
                item = next(it)
            except StopIteration:
                break
            if not (isinstance(item, tuple | list) and len(item) == 2):
                msg = (f"Sequential.{self.owner}: each minibatch must be a pair (X, y), got "
                       f"{type(item).__name__}" + (f" of length {len(item)}"
                                                   if isinstance(item, tuple | list) else ""))
                raise TypeError(msg)
            Xb, yb = item
            # labels on the host are checked against the output (on the device it would cost a sync)
            host_y = np.asarray(yb) if isinstance(yb, np.ndarray) or not self.backend.owns(yb) else None
            Xb = self.backend.asarray(Xb if self.backend.owns(Xb) else np.asarray(Xb))
            yb = self.backend.asarray(yb if host_y is None else host_y)
            if int(Xb.shape[0]) != int(yb.shape[0]):
                msg = (f"Sequential.{self.owner}: a minibatch has {int(Xb.shape[0])} inputs but "
                       f"{int(yb.shape[0])} targets")
                raise ValueError(msg)
            count += 1
            yield Xb, yb, host_y
        if count == 0:
            msg = (f"Sequential.{self.owner}: the data gave no minibatch this epoch; a generator is "
                   f"read once, so pass a list, an object whose __iter__ starts over, or a function "
                   f"that returns a new iterator")
            raise ValueError(msg)


def check_host_labels(y: np.ndarray | None, out: Array, owner: str) -> None:
    """Integer class labels on the host must index the output's last axis."""
    if y is None or y.dtype.kind not in "iu" or y.size == 0 or out.ndim < 1:
        return
    n_classes = int(out.shape[-1])
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_classes:
        msg = (f"Sequential.{owner}: class labels must lie in [0, {n_classes}) for an output of "
               f"{n_classes} classes, got labels from {low} to {high}")
        raise ValueError(msg)


class InterruptGuard:
    """Inside a ``with`` block, the first Ctrl-C (SIGINT) only sets :attr:`requested` so that the
    training loop can stop after its current step; a second one interrupts at once.

    Outside the main thread (where signal handlers cannot be installed) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: stopping after the current step (Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
            except ValueError:  # not the main interpreter
                self._installed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
