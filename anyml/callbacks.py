"""Callbacks for :meth:`anyml.model.Sequential.fit`: early stopping, checkpoints, learning-rate
reduction on a plateau, a CSV log.

``fit`` calls each callback's :meth:`Callback.on_train_begin` once, :meth:`Callback.on_epoch_end`
after every epoch with that epoch's logs (``{"loss": ..., "accuracy": ..., "val_loss": ...}``, plain
floats), and :meth:`Callback.on_train_end` once when training stops for any reason (the last epoch,
``model.stop_training``, Ctrl-C). A plain function ``f(epoch, logs)`` is accepted as well and is
called after every epoch.

Examples
--------
>>> import numpy as np
>>> import anyml
>>> from anyml.callbacks import EarlyStopping
>>> from anyml.layers import FullyConnected
>>> be = anyml.make_backend("numpy", seed=0)
>>> model = anyml.Sequential([FullyConnected(1, backend=be)], loss="mse", optimizer="Adam(lr=0.1)")
>>> X = np.linspace(-1, 1, 40)[:, None]
>>> stop = EarlyStopping(monitor="val_loss", patience=2)
>>> history = model.fit(X, 3 * X, epochs=50, batch_size=8, validation_split=0.25,
...                     callbacks=[stop], verbose=False)
>>> stop.best_epoch + 1 <= len(history["loss"]) <= 50
True
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

from anyml._validate import non_negative_int, real

if TYPE_CHECKING:
    from anyml.model import Sequential

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
]


class Callback:
    """Base class of the callbacks: override the hooks you need.

    Attributes
    ----------
    model : Sequential or None
        The model being trained, set by ``fit`` before :meth:`on_train_begin`.
    """

    def __init__(self) -> None:
        self.model: Sequential | None = None

    def set_model(self, model: Sequential) -> None:
        """Called by ``fit`` before training starts."""
        self.model = model

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        """Called once, before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Called after each epoch (``epoch`` counts from 0) with its metrics."""

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        """Called once when training stops, with the last epoch's logs (``None`` if there was none)."""

    def __call__(self, epoch: int, logs: Mapping[str, float]) -> None:
        """The plain-function protocol: same as :meth:`on_epoch_end`."""
        self.on_epoch_end(epoch, logs)


class LambdaCallback(Callback):
    """Wrap a function ``f(epoch, logs)`` called after every epoch."""

    def __init__(self, on_epoch_end: Callable[[int, dict[str, float]], Any]) -> None:
        super().__init__()
        self._fn = on_epoch_end

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        self._fn(epoch, dict(logs))


def as_callback(obj: Any) -> Callback:
    """A :class:`Callback` as it is, a function ``f(epoch, logs)`` wrapped in a :class:`LambdaCallback`."""
    if isinstance(obj, Callback):
        return obj
    if callable(obj):
        return LambdaCallback(obj)
    msg = f"fit: a callback must be a Callback or a function f(epoch, logs), got {type(obj).__name__}"
    raise TypeError(msg)


def _mode(owner: str, mode: str, monitor: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` maximizes accuracies and minimizes everything else."""
    if mode not in ("auto", "min", "max"):
        msg = f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}"
        raise ValueError(msg)
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


class _Monitor:
    """Tracks the best value of one logged metric."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float) -> None:
        self.owner, self.monitor = owner, monitor
        self.mode = _mode(owner, mode, monitor)
        self.min_delta = abs(real(owner, "min_delta", min_delta))
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1

    def value(self, logs: Mapping[str, float]) -> float:
        if self.monitor not in logs:
            msg = (f"{self.owner}: monitor={self.monitor!r} is not in the logs, which have "
                   f"{sorted(logs)}; pass validation_data or validation_split for 'val_' metrics")
            raise KeyError(msg)
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


def snapshot_parameters(model: Sequential) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Copies (on the device) of every parameter of every layer, nested layers included, with the
    dicts they came from; :func:`restore_parameters` puts them back."""
    seen: set[int] = set()
    out = []
    for module in model._modules():
        params = getattr(module, "parameters", None)
        if not isinstance(params, dict) or id(params) in seen:
            continue
        seen.add(id(params))
        xp = module.backend.xp
        out.append((params, {k: xp.asarray(v, copy=True) for k, v in params.items()}))
    return out


def restore_parameters(snapshot: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Put the parameters saved by :func:`snapshot_parameters` back in place."""
    for params, saved in snapshot:
        params.update(saved)


class EarlyStopping(Callback):
    """Stop training when a metric has stopped improving, and go back to the best epoch's weights.

    Parameters
    ----------
    monitor : str
        The logged metric to watch. Default ``"val_loss"``.
    patience : int
        Epochs without improvement that are tolerated: training stops after the next one (as
        PyTorch counts patience). Default 0: stop at the first epoch without improvement.
    min_delta : float
        The smallest change that counts as an improvement. Default 0.
    mode : {"auto", "min", "max"}
        Whether smaller or larger is better; ``"auto"`` maximizes names containing ``"acc"``.
    restore_best_weights : bool
        When training ends and the best epoch was not the last one, put back the parameters of the
        best epoch (copies kept on the device; optimizer state is not rewound). Default True.

    Attributes
    ----------
    best : float
        The best value seen.
    best_epoch : int
        The epoch (from 0) that reached it.
    stopped_epoch : int or None
        The epoch after which training was stopped, or None.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True) -> None:
        super().__init__()
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = non_negative_int("EarlyStopping", "patience", patience)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch: int | None = None
        self._wait = 0
        self._best_weights: list[Any] | None = None
        self._last_epoch = -1

    @property
    def best(self) -> float:
        return self._monitor.best

    @property
    def best_epoch(self) -> int:
        return self._monitor.best_epoch

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._monitor.reset()
        self._wait, self.stopped_epoch, self._best_weights = 0, None, None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        value = self._monitor.value(logs)
        self._last_epoch = epoch
        if self._monitor.improved(value):
            self._monitor.best, self._monitor.best_epoch = value, epoch
            self._wait = 0
            if self.restore_best_weights and self.model is not None:
                self._best_weights = snapshot_parameters(self.model)
            return
        self._wait += 1
        if self._wait > self.patience and self.model is not None:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self._best_weights is not None and self.best_epoch != self._last_epoch:
            restore_parameters(self._best_weights)
        self._best_weights = None


class ModelCheckpoint(Callback):
    """Save the model with :func:`anyml.save` after every epoch, or only when a metric improves.

    Parameters
    ----------
    filepath : str or path-like
        Where to write. It may hold ``{epoch}`` (counted from 1) and any logged metric, formatted as
        in :meth:`str.format`: ``"ckpt/epoch{epoch:03d}-{val_loss:.3f}.npz"``.
    monitor : str
        The metric that decides what is best. Default ``"val_loss"``.
    save_best_only : bool
        Write only when the monitored metric improves (else after every epoch). Default False.
    mode : {"auto", "min", "max"}
        As for :class:`EarlyStopping`.

    Attributes
    ----------
    saved : list of str
        The paths written, in order.
    """

    def __init__(self, filepath: str | PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode, 0.0)
        self.saved: list[str] = []

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._monitor.reset()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self.model is None:
            return
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.improved(value):
                return
            self._monitor.best, self._monitor.best_epoch = value, epoch
        from anyml.checkpoint import save

        path = self.filepath.format(epoch=epoch + 1, **logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        save(self.model, path)
        self.saved.append(path)


def scale_learning_rate(optimizer: Any, factor: float, min_lr: float = 0.0) -> float:
    """Multiply an optimizer's base learning rate (its scheduler's) by ``factor``, not below ``min_lr``.

    The schedule keeps its shape: a ``ConstantScheduler`` changes its ``lr``, an
    ``ExponentialScheduler`` or ``KingScheduler`` its ``initial_lr`` (and the King scheduler its
    current rate), a ``NoamScheduler`` its ``scale_factor``. Returns the new learning rate of the
    current step.
    """
    sched = optimizer.lr_scheduler
    field = sched._lr_field or ("scale_factor" if hasattr(sched, "scale_factor") else None)
    if field is not None:
        setattr(sched, field, max(getattr(sched, field) * factor, min_lr))
    if hasattr(sched, "current_lr"):
        sched.current_lr = max(sched.current_lr * factor, min_lr)
    if field in ("lr", "initial_lr"):
        optimizer.lr = getattr(sched, field)
    optimizer._lr_at = None
    return float(optimizer.learning_rate())


class ReduceLROnPlateau(Callback):
    """Multiply every layer's learning rate by ``factor`` when a metric stops improving.

    Parameters
    ----------
    monitor : str
        Default ``"val_loss"``.
    factor : float
        In (0, 1). Default 0.1.
    patience : int
        Epochs without improvement that are tolerated; the rate is reduced after the next one.
        Default 10.
    min_delta : float
        The smallest change that counts as an improvement. Default 1e-4.
    cooldown : int
        Epochs to wait after a reduction before watching again. Default 0.
    min_lr : float
        The rate never goes below this. Default 0.
    mode : {"auto", "min", "max"}
        As for :class:`EarlyStopping`.

    Notes
    -----
    Each trainable layer's optimizer is scaled with :func:`scale_learning_rate`, so a schedule keeps
    its shape at the lower rate.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto") -> None:
        super().__init__()
        self.factor = real("ReduceLROnPlateau", "factor", factor, low=0.0, high=1.0, low_open=True,
                           high_open=True)
        self.patience = non_negative_int("ReduceLROnPlateau", "patience", patience)
        self.cooldown = non_negative_int("ReduceLROnPlateau", "cooldown", cooldown)
        self.min_lr = real("ReduceLROnPlateau", "min_lr", min_lr, low=0.0)
        self._monitor = _Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self._wait = self._cooldown = 0
        #: The epochs (from 0) after which the rate was reduced.
        self.reductions: list[int] = []

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._monitor.reset()
        self._wait = self._cooldown = 0

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        value = self._monitor.value(logs)
        if self._cooldown > 0:
            self._cooldown -= 1
            self._wait = 0
        if self._monitor.improved(value):
            self._monitor.best, self._monitor.best_epoch = value, epoch
            self._wait = 0
            return
        if self._cooldown > 0:
            return
        self._wait += 1
        if self._wait > self.patience and self.model is not None:
            for optimizer in self.model._optimizers():
                scale_learning_rate(optimizer, self.factor, self.min_lr)
            self.reductions.append(epoch)
            self._wait, self._cooldown = 0, self.cooldown


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` from 1, then every logged metric) to a CSV file.

    Parameters
    ----------
    filename : str or path-like
        The file; created with a header row, or appended to when ``append`` and it exists.
    append : bool
        Keep the rows of earlier runs. Default False (the file is rewritten).
    separator : str
        Default ``","``.
    """

    def __init__(self, filename: str | PathLike[str], append: bool = False,
                 separator: str = ",") -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.append = bool(append)
        self.separator = separator
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._keys = None
        if not self.append and os.path.exists(self.filename):
            os.unlink(self.filename)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        new_file = not os.path.exists(self.filename) or os.path.getsize(self.filename) == 0
        if self._keys is None:
            self._keys = list(logs)
        with open(self.filename, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if new_file:
                writer.writerow(["epoch", *self._keys])
            writer.writerow([epoch + 1, *(repr(float(logs[k])) if k in logs else "" for k in self._keys)])
