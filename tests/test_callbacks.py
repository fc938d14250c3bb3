"""Callbacks: early stopping restores the best epoch, checkpoints load, the learning rate drops on a
plateau, the CSV log has one row per epoch; on every backend."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import anyml
from anyml.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    scale_learning_rate,
)
from anyml.layers import FullyConnected, Softmax
from anyml.optimizers import get_optimizer


def _data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _model(be, lr=0.05):
    return anyml.Sequential([FullyConnected(8, act_fn="Tanh", backend=be), FullyConnected(2, backend=be),
                             Softmax(backend=be)], loss="CrossEntropy(reduction='mean')",
                            optimizer=f"Adam(lr={lr})")


def _params(model):
    return [{k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()} for layer in model]


class _Recorder(Callback):
    """Keeps the parameters after every epoch (and the epoch numbers seen)."""

    def __init__(self):
        super().__init__()
        self.params, self.events = [], []

    def on_train_begin(self, logs=None):
        self.events.append("begin")

    def on_epoch_end(self, epoch, logs):
        self.events.append(epoch)
        self.params.append(_params(self.model))

    def on_train_end(self, logs=None):
        self.events.append("end")


def test_early_stopping_restores_the_best_epochs_weights(backend):
    X, y = _data()
    Xv, yv = _data(1, 20)
    model = _model(backend, lr=0.3)  # a large step: validation loss rises again after a while
    rec = _Recorder()
    stop = EarlyStopping(monitor="val_loss", patience=2)
    history = model.fit(X, y, epochs=60, batch_size=10, validation_data=(Xv, yv), verbose=False,
                        callbacks=[rec, stop])
    n = len(history["val_loss"])
    best = int(np.argmin(history["val_loss"]))
    assert stop.best_epoch == best
    assert stop.best == history["val_loss"][best]
    assert rec.events[0] == "begin" and rec.events[-1] == "end" and rec.events[1:-1] == list(range(n))
    if stop.stopped_epoch is not None:
        assert n == best + 4 < 60  # patience 2: two bad epochs tolerated, stop after the third
    assert best < n - 1, "the test needs a run whose best epoch is not the last"
    for layer_now, layer_best in zip(_params(model), rec.params[best], strict=True):
        for name, value in layer_best.items():
            np.testing.assert_array_equal(layer_now[name], value, err_msg=name)
    # and the restored model scores the best epoch's validation loss
    np.testing.assert_allclose(model.evaluate(Xv, yv)["loss"], history["val_loss"][best], rtol=1e-5)


def test_early_stopping_on_accuracy_maximizes_and_can_keep_the_last_weights(backend):
    X, y = _data()
    model = _model(backend, lr=0.3)
    rec = _Recorder()
    stop = EarlyStopping(monitor="accuracy", patience=0, restore_best_weights=False)
    history = model.fit(X, y, epochs=40, batch_size=10, verbose=False, callbacks=[stop, rec])
    assert stop.best == max(history["accuracy"])
    for layer_now, layer_last in zip(_params(model), rec.params[-1], strict=True):
        for name, value in layer_last.items():
            np.testing.assert_array_equal(layer_now[name], value)
    with pytest.raises(KeyError, match="monitor='val_loss' is not in the logs"):
        _model(backend).fit(X, y, epochs=1, verbose=False, callbacks=[EarlyStopping()])


def test_model_checkpoint_every_epoch_and_best_only(backend, tmp_path):
    X, y = _data()
    Xv, yv = _data(1, 20)
    model = _model(backend, lr=0.3)
    every = ModelCheckpoint(tmp_path / "e{epoch:02d}-{val_loss:.3f}.npz", save_best_only=False)
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss", save_best_only=True)
    rec = _Recorder()
    history = model.fit(X, y, epochs=8, batch_size=10, validation_data=(Xv, yv), verbose=False,
                        callbacks=[every, best, rec])
    assert len(every.saved) == 8
    assert every.saved[0].endswith(f"e01-{history['val_loss'][0]:.3f}.npz")
    improvements = [i for i, v in enumerate(history["val_loss"])
                    if v < min(history["val_loss"][:i], default=np.inf)]
    assert len(best.saved) == len(improvements)
    loaded = anyml.load(tmp_path / "best.npz", backend=backend)
    for layer_loaded, layer_best in zip(loaded, rec.params[improvements[-1]], strict=True):
        for name, value in layer_best.items():
            np.testing.assert_array_equal(anyml.to_numpy(layer_loaded.parameters[name]), value)
    third = anyml.load(every.saved[2], backend=backend)
    np.testing.assert_allclose(third.evaluate(Xv, yv)["loss"], history["val_loss"][2], rtol=1e-5)


def test_reduce_lr_on_plateau(backend):
    X, y = _data()
    model = _model(backend, lr=0.1)
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0, min_lr=0.02)
    model.fit(X, y, epochs=4, batch_size=30, verbose=False, callbacks=[plateau])
    # min_delta=10: no epoch counts as an improvement after the first, so the rate halves after
    # epochs 2, 3 and 4 (from 0.1 to 0.05, 0.025, then the floor 0.02)
    assert plateau.reductions == [1, 2, 3]
    for opt in model._optimizers():
        assert opt.learning_rate() == pytest.approx(0.02)


@pytest.mark.parametrize("spec, expected", [
    ("Adam(lr=0.1)", 0.05),
    ("SGD(lr=0.1, lr_scheduler=ExponentialScheduler(initial_lr=0.1, stage_length=1, decay=0.5))", 0.05),
    ("SGD(lr_scheduler=NoamScheduler(model_dim=4, scale_factor=1.0, warmup_steps=1))", 0.25),
])
def test_scale_learning_rate_keeps_the_schedule(spec, expected):
    opt = get_optimizer(spec)
    assert scale_learning_rate(opt, 0.5) == pytest.approx(expected)


def test_csv_logger_one_row_per_epoch(backend, tmp_path):
    X, y = _data()
    path = tmp_path / "log.csv"
    history = _model(backend).fit(X, y, epochs=3, batch_size=20, validation_split=0.25,
                                  verbose=False, callbacks=[CSVLogger(path)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], history["val_loss"])
    _model(backend).fit(X, y, epochs=2, batch_size=20, verbose=False,
                        callbacks=[CSVLogger(path, append=True)])
    assert len(list(csv.reader(path.open()))) == 1 + 3 + 2


def test_plain_functions_and_bad_callbacks(backend):
    X, y = _data()
    seen = []
    _model(backend).fit(X, y, epochs=2, verbose=False, callbacks=[lambda e, logs: seen.append(e)])
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="a callback must be a Callback or a function"):
        _model(backend).fit(X, y, epochs=1, verbose=False, callbacks=["early"])
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="largest")
