"""Bad data through Sequential: checked and converted where it enters (fit, evaluate, predict,
train_on_batch), never trained on silently, and never a last training batch of one."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml._training import batch_starts
from anyml.layers import BatchNorm1D, FullyConnected, Softmax
from anyml.model import Sequential
from tests.bad_input._helpers import refused


def _model(be, bn=True, loss="CrossEntropy"):
    layers = [FullyConnected(5, optimizer="SGD(lr=0.05)", backend=be)]
    if bn:
        layers.append(BatchNorm1D(backend=be))
    layers += [FullyConnected(3, backend=be), Softmax(backend=be)]
    model = Sequential(layers, loss=loss)
    model.predict(_data(4)[0])  # the parameters exist: tests compare them before and after
    return model


def _data(n=13, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def _params(model):
    return [anyml.to_numpy(p).copy() for layer in model.layers for p in layer.parameters.values()]


def _unchanged(model, before):
    for a, b in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("n", "bs"), [(1, 1), (2, 1), (9, 4), (10, 3), (13, 4), (5, 4), (33, 32)])
def test_batches_never_end_with_one_example(n, bs):
    starts = batch_starts(n, bs)
    sizes = [size for _, size in starts]
    assert sum(sizes) == n and [s for s, _ in starts] == list(np.cumsum([0, *sizes[:-1]]))
    assert len(sizes) == 1 or sizes[-1] > 1
    assert max(sizes) <= bs + 1


def test_fit_with_batchnorm_when_n_mod_batch_is_one(backend):
    model = _model(backend)
    X, y = _data(13)
    model.fit(X, y, epochs=2, batch_size=4, verbose=False)  # 4, 4, 5: no batch of one
    for name in ("running_mean", "running_var"):
        assert np.isfinite(anyml.to_numpy(model.layers[1].parameters[name])).all()


@pytest.mark.parametrize("labels", ["out of range", "negative", "floats", "strings", "one-hot wide"])
@pytest.mark.parametrize("entry", ["fit", "train_on_batch", "evaluate"])
def test_bad_labels_refused_wherever_they_enter(backend, entry, labels):
    model = _model(backend, bn=False)
    X, y = _data(8)
    bad = {"out of range": np.array([0, 1, 2, 3, 0, 1, 2, 0]),
           "negative": -np.ones(8, dtype=np.int64),
           "floats": y.astype(float),
           "strings": np.array(list("abcabcab")),
           "one-hot wide": np.eye(5)[np.arange(8) % 5]}[labels]
    before = _params(model)
    if entry == "fit":
        refused(("Sequential.fit", "CrossEntropy"), model.fit, X, bad, epochs=1, batch_size=4,
                verbose=False)
    elif entry == "evaluate":
        refused(("Sequential.evaluate", "CrossEntropy"), model.evaluate, X, bad)
    else:
        refused(("Sequential.train_on_batch", "CrossEntropy"), model.train_on_batch, X, bad)
    _unchanged(model, before)


@pytest.mark.parametrize("on_device", [False, True])
def test_labels_on_the_device_are_checked_too(backend, on_device):
    model = _model(backend, bn=False)
    X, _ = _data(8)
    y = np.full(8, 7)
    if on_device:
        X, y = backend.asarray(X), backend.asarray(y)
    before = _params(model)
    refused("class labels", model.train_on_batch, X, y)
    refused("class labels", model.fit, X, y, verbose=False)
    _unchanged(model, before)


@pytest.mark.parametrize("where", ["X", "y"])
def test_nan_in_the_data_is_reported_as_such(backend, where):
    model = _model(backend, bn=False, loss="SquaredError")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    (X if where == "X" else y)[3, 1] = np.nan
    before = _params(model)
    exc = refused("Sequential.fit", model.fit, X, y, verbose=False, match=f"{where} holds NaN")
    assert "learning rate" not in str(exc)
    refused("Sequential.evaluate", model.evaluate, X, y, match="NaN")
    _unchanged(model, before)


@pytest.mark.parametrize("int_dtype", [np.uint8, np.int32, np.int64, bool])
def test_integer_and_boolean_data_are_converted(backend, int_dtype):
    model = _model(backend, bn=False)
    X = (np.random.default_rng(0).random((8, 4)) * 3).astype(int_dtype)
    y = np.arange(8) % 3
    model.fit(X, y, epochs=1, batch_size=4, verbose=False)
    out = model.predict(X)
    assert out.dtype == backend.dtype and tuple(out.shape) == (8, 3)
    assert set(model.evaluate(X, y)) == {"loss", "accuracy"}
    model.train_on_batch(X, y)
    reg = _model(backend, bn=False, loss="SquaredError")
    reg.fit(X, np.eye(3, dtype=int_dtype)[y], epochs=1, verbose=False)  # integer targets too


@pytest.mark.parametrize("value", [("X",), (1, 2, 3), "Xy", 5, [np.zeros((2, 4))]])
def test_validation_data_must_be_a_pair(backend, value):
    model = _model(backend, bn=False)
    before = _params(model)
    refused("validation_data", model.fit, *_data(8), validation_data=value, verbose=False)
    _unchanged(model, before)  # refused before training


def test_bad_validation_data_refused_before_training(backend):
    model = _model(backend, bn=False)
    X, y = _data(8)
    before = _params(model)
    refused("Sequential.fit", model.fit, X, y, validation_data=(X, np.full(8, 9)), verbose=False)
    refused("Sequential.fit", model.fit, X, y, validation_data=(X[:, :2] * np.nan, y), verbose=False)
    _unchanged(model, before)


@pytest.mark.parametrize("X", [np.array(["a", "b"]), np.zeros((0, 4)), np.array(3.0),
                               [[1.0, 2.0], [3.0]], np.ones((4, 4), dtype=complex)])
def test_bad_inputs_refused(backend, X):
    model = _model(backend, bn=False)
    refused("Sequential.predict", model.predict, X)


def test_mismatched_lengths(backend):
    model = _model(backend, bn=False)
    X, y = _data(8)
    refused("Sequential.fit", model.fit, X, y[:5], verbose=False)


def test_set_params_refuses_non_dicts(backend):
    model = _model(backend, bn=False)
    for bad in ([1, 2], "x", None):
        refused("Sequential.set_params", model.set_params, bad)
