"""Sequential: training agrees across backends, modes reach every layer, fit/evaluate/predict."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import anyml
from anyml.layers.dense import FullyConnected
from anyml.layers.norm import BatchNorm1D
from anyml.layers.softmax import Softmax
from anyml.losses import VAELoss
from anyml.model import Sequential
from anyml.testing import assert_close, gradcheck
from anyml.wrappers import Dropout

N_EX, N_IN, N_CLASSES = 48, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_EX, N_IN))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y


def _classifier(be, *, softmax=True, dropout=0.0, optimizer="Adam(lr=0.01)"):
    hidden = FullyConnected(8, act_fn="Tanh", optimizer=optimizer, backend=be)
    layers = [Dropout(hidden, dropout) if dropout else hidden,
              FullyConnected(N_CLASSES, optimizer=optimizer, backend=be)]
    if softmax:
        layers.append(Softmax(backend=be))
    loss = "CrossEntropy(reduction='mean')" if softmax else "CrossEntropy(from_logits=True, " \
                                                           "reduction='mean')"
    return Sequential(layers, loss=loss)


def _regressor(be):
    return Sequential([FullyConnected(6, act_fn="ReLU", optimizer="SGD(lr=0.01, momentum=0.9)",
                                      backend=be),
                       FullyConnected(2, optimizer="SGD(lr=0.01, momentum=0.9)", backend=be)],
                      loss="SquaredError")


def _reference(kind, shuffle=False):
    be = anyml.make_backend("numpy", dtype="float64", seed=0)
    return _train(kind, be, shuffle)


def _train(kind, be, shuffle):
    X, y = _data()
    if kind == "classifier":
        model = _classifier(be)
        target = y
    else:
        model = _regressor(be)
        target = np.stack([X[:, 0] * X[:, 1], X[:, 2] - X[:, 3]], axis=1)
    history = model.fit(X, target, epochs=3, batch_size=10, shuffle=shuffle, verbose=False)
    return model, history


# ---------------------------------------------------------------------------- across backends
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_training_agrees_across_backends(make_backend_for, kind, shuffle):
    """Same seed, same minibatches (the order comes from the host generator), same losses."""
    be = make_backend_for("float64", seed=0)
    ref_model, ref_history = _reference(kind, shuffle)
    model, history = _train(kind, be, shuffle)
    assert sorted(history) == sorted(ref_history)
    for key, values in ref_history.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-10, atol=1e-12, err_msg=key)
    for layer, ref_layer in zip(model.layers, ref_model.layers, strict=True):
        for name, value in ref_layer.parameters.items():
            assert_close(layer.parameters[name], value, backend=be, err_msg=name)


def test_shuffling_changes_the_order_between_epochs_and_seeds(make_backend_for):
    _, shuffled = _train("classifier", make_backend_for("float64", seed=0), shuffle=True)
    _, again = _train("classifier", make_backend_for("float64", seed=0), shuffle=True)
    _, other_seed = _train("classifier", make_backend_for("float64", seed=1), shuffle=True)
    _, ordered = _train("classifier", make_backend_for("float64", seed=0), shuffle=False)
    assert shuffled == again
    assert shuffled["loss"] != ordered["loss"]
    assert shuffled["loss"] != other_seed["loss"]


def test_float32_stays_float32(backend):
    model = _classifier(backend)
    X, y = _data()
    model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    out = model.predict(X)
    assert_close(out, anyml.to_numpy(out), backend=backend)
    for layer in model.layers:
        for value in layer.parameters.values():
            assert value.dtype == backend.dtype


# ---------------------------------------------------------------------------- the training step
def test_fused_softmax_equals_training_on_logits(backend64):
    """CrossEntropy() after a Softmax layer trains exactly like CrossEntropy(from_logits=True)."""
    X, y = _data()
    fused = _classifier(backend64)
    logits = _classifier(anyml.make_backend(backend64.name, device=backend64.device,
                                            dtype="float64", seed=0), softmax=False)
    for _ in range(3):
        a = fused.train_on_batch(X[:16], y[:16])
        b = logits.train_on_batch(X[:16], y[:16])
        assert_close(a, anyml.to_numpy(b), backend=backend64)
    for la, lb in zip(fused.layers[:2], logits.layers, strict=True):
        for name, value in la.parameters.items():
            assert_close(value, lb.parameters[name], backend=backend64)
    assert all(not layer._caches for layer in fused.layers)


def test_backward_matches_finite_differences(backend64):
    model = _classifier(backend64)
    X = backend64.rng.normal((4, N_IN))
    model.forward(X, retain_derived=False)  # build the parameters
    gradcheck(model, [X], params=False)


def test_one_hot_targets_equal_class_indices(backend64):
    X, y = _data()
    a = _classifier(backend64).fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=False)
    be = anyml.make_backend(backend64.name, device=backend64.device, dtype="float64", seed=0)
    b = _classifier(be).fit(X, np.eye(N_CLASSES)[y], epochs=1, batch_size=16, shuffle=False,
                            verbose=False)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-12)
    assert a["accuracy"] == b["accuracy"]


def test_data_on_the_device_equals_host_data(backend64):
    X, y = _data()
    a = _classifier(backend64).fit(X, y, epochs=2, batch_size=16, verbose=False)
    be = anyml.make_backend(backend64.name, device=backend64.device, dtype="float64", seed=0)
    b = _classifier(be).fit(be.asarray(X), be.asarray(y), epochs=2, batch_size=16, verbose=False)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-12)


def test_training_reduces_the_loss(backend):
    X, y = _data()
    history = _classifier(backend).fit(X, y, epochs=15, batch_size=8, verbose=False)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8


# ---------------------------------------------------------------------------- modes
def test_train_and_eval_reach_every_layer_and_wrapper(backend):
    hidden = FullyConnected(4, backend=backend)
    model = Sequential([Dropout(hidden, 0.5), BatchNorm1D(backend=backend),
                        FullyConnected(N_CLASSES, backend=backend), Softmax(backend=backend)],
                       loss="CrossEntropy")
    objects = [*model.layers, hidden]
    assert all(o.training for o in objects)
    assert model.eval() is model
    assert not any(o.training for o in objects)
    assert not model.training
    model.train()
    assert all(o.training for o in objects)


def test_predict_and_evaluate_run_in_inference_and_restore_the_mode(backend):
    model = _classifier(backend, dropout=0.5)
    X, y = _data()
    first = model.predict(X)
    assert_close(model.predict(X), anyml.to_numpy(first), backend=backend)  # no dropout
    model.evaluate(X, y)
    assert model.training and model.layers[0].base_layer.training
    model.eval()
    assert_close(model.forward(backend.asarray(X), retain_derived=False), anyml.to_numpy(first),
                 backend=backend)
    model.predict(X)
    assert not model.training


def test_freeze_keeps_the_parameters(backend):
    model = _classifier(backend)
    X, y = _data()
    model.predict(X)
    before = [anyml.to_numpy(p).copy() for layer in model for p in layer.parameters.values()]
    model.freeze()
    model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    after = [anyml.to_numpy(p) for layer in model for p in layer.parameters.values()]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    model.unfreeze()
    model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    assert not np.array_equal(before[0], anyml.to_numpy(model.layers[0].parameters["W"]))


# ---------------------------------------------------------------------------- fit/evaluate/predict
def test_fit_evaluate_predict_shapes_and_history(backend):
    model = _classifier(backend)
    X, y = _data()
    seen = []
    history = model.fit(X, y, epochs=2, batch_size=7, validation_data=(X[:10], y[:10]),
                        verbose=False, callbacks=[lambda epoch, logs: seen.append((epoch, logs))])
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 2 for v in history.values())
    assert [e for e, _ in seen] == [0, 1]
    assert seen[1][1]["val_loss"] == history["val_loss"][1]
    scores = model.evaluate(X, y, batch_size=5)
    assert sorted(scores) == ["accuracy", "loss"]
    assert 0.0 <= scores["accuracy"] <= 1.0
    np.testing.assert_allclose(scores["loss"], model.evaluate(X, y)["loss"],
                               rtol=1e-5 if backend.dtype_name == "float32" else 1e-12)
    out = model.predict(X, batch_size=5)
    assert tuple(out.shape) == (N_EX, N_CLASSES)
    assert_close(out, anyml.to_numpy(model.predict(X)), backend=backend)
    assert_close(backend.xp.sum(out, axis=1), np.ones(N_EX), backend=backend)


def test_regression_history_has_no_accuracy(backend):
    model, history = _train("regressor", backend, shuffle=True)
    assert sorted(history) == ["loss"]
    X = _data()[0]
    scores = model.evaluate(X, np.zeros((N_EX, 2)))
    assert sorted(scores) == ["loss"]
    expected = 0.5 * np.sum(anyml.to_numpy(model.predict(X)).astype(np.float64) ** 2) / N_EX
    np.testing.assert_allclose(scores["loss"], expected, rtol=1e-5)


def test_a_callback_can_stop_training(backend):
    model = _classifier(backend)

    def stop(epoch, logs):
        model.stop_training = True

    history = model.fit(*_data(), epochs=5, verbose=False, callbacks=[stop])
    assert len(history["loss"]) == 1


def test_on_a_terminal_a_short_bar_then_one_line_per_epoch(backend, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr("anyml._training._is_terminal", lambda stream: True)
    _classifier(backend).fit(*_data(), epochs=2, batch_size=16, verbose=True,
                             validation_data=_data(1))
    captured = capsys.readouterr()
    assert "ex/s" in captured.err
    assert "accuracy" not in captured.err  # the bar holds the throughput and the loss only
    lines = captured.out.strip().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val_accuracy" in line for line in lines)


def test_not_a_terminal_one_plain_line_per_epoch(backend, capsys):
    """Logs written to a file or a pipe: exactly one line per epoch, no carriage returns."""
    _classifier(backend).fit(*_data(), epochs=3, batch_size=16, verbose=True,
                             validation_data=_data(1))
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "\r" not in captured.out
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    assert lines[2].startswith("epoch 3/3 - 48 ex in ")
    for key in ("ex/s", " - loss ", " - accuracy ", " - val_loss ", " - val_accuracy "):
        assert key in lines[2]


def test_without_tqdm_one_line_per_epoch(backend, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr("anyml._training._is_terminal", lambda stream: True)
    _classifier(backend).fit(*_data(), epochs=2, batch_size=16, verbose=True)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2 - 48 ex in ")
    assert "ex/s" in lines[1]
    assert captured.err == ""


def test_verbose_false_is_silent(backend, capsys):
    _classifier(backend).fit(*_data(), epochs=1, verbose=False)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


# ---------------------------------------------------------------------------- summary, moves
def test_summary_set_params_round_trip(backend):
    X, y = _data()
    model = _classifier(backend)
    model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    summary = model.summary()
    assert summary["model"] == "Sequential"
    assert summary["loss"] == "CrossEntropy(from_logits=False, reduction='mean')"
    assert [s["layer"] for s in summary["layers"]] == ["FullyConnected", "FullyConnected",
                                                       "Softmax"]
    be = anyml.make_backend(backend.name, device=backend.device, dtype=backend.dtype_name, seed=5)
    fresh = _classifier(be).set_params(summary)
    assert_close(fresh.predict(X), anyml.to_numpy(model.predict(X)), backend=be, rtol=0, atol=0)
    assert model.count_params() == fresh.count_params() == N_IN * 8 + 8 + 8 * N_CLASSES + N_CLASSES


def test_to_moves_every_layer(backend):
    X, y = _data()
    model = _classifier(anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0),
                        dropout=0.2)
    model.fit(X, y, epochs=1, verbose=False)
    expected = anyml.to_numpy(model.predict(X))
    assert model.to(backend) is model
    assert model.backend is backend
    assert all(layer.backend is backend for layer in model.layers)
    assert_close(model.predict(X), expected, backend=backend)
    model.fit(X, y, epochs=1, verbose=False)  # optimizer state moved too


def test_backend_argument_moves_the_layers(backend):
    numpy_layers = [FullyConnected(3, backend=anyml.make_backend("numpy", dtype=backend.dtype_name))]
    model = Sequential(numpy_layers, loss="SquaredError", backend=backend)
    assert model.layers[0].backend is backend


# ---------------------------------------------------------------------------- errors
def test_constructor_errors(backend):
    fc = FullyConnected(3, backend=backend)
    with pytest.raises(ValueError, match="Sequential: expected at least one layer"):
        Sequential([])
    with pytest.raises(TypeError, match="Sequential: layer 1 must be an anyml layer"):
        Sequential([fc, "relu"])
    other = "array-api-strict" if backend.name != "array-api-strict" else "numpy"
    with pytest.raises(ValueError, match=r"Sequential: layer 1 \(FullyConnected\) is on"):
        Sequential([fc, FullyConnected(2, backend=other)])
    with pytest.raises(ValueError, match="Sequential: CrossEntropy.* expects probabilities"):
        Sequential([fc], loss="CrossEntropy")
    with pytest.raises(TypeError, match="Sequential: the loss must be SquaredError or CrossEntropy"):
        Sequential([fc], loss=VAELoss())
    with pytest.raises(ValueError, match="unknown loss"):
        Sequential([fc], loss="Hinge")


def test_fit_errors(backend):
    X, y = _data()
    model = _classifier(backend)
    with pytest.raises(ValueError, match=r"Sequential.fit: X has 48 examples but y has shape \(47,\)"):
        model.fit(X, y[:-1], verbose=False)
    with pytest.raises(ValueError, match="Sequential.fit: batch_size must be a positive integer"):
        model.fit(X, y, batch_size=0, verbose=False)
    with pytest.raises(ValueError, match="Sequential.fit: epochs must be a positive integer"):
        model.fit(X, y, epochs=1.5, verbose=False)
    with pytest.raises(ValueError, match="Sequential.predict: X holds no examples"):
        model.predict(X[:0])
    no_loss = Sequential(model.layers)
    with pytest.raises(RuntimeError, match="Sequential.fit: the model has no loss"):
        no_loss.fit(X, y, verbose=False)
    assert tuple(no_loss.predict(X).shape) == (N_EX, N_CLASSES)


def test_forward_refuses_host_arrays(backend):
    if backend.name == "numpy":
        pytest.skip("host arrays are NumPy arrays")
    with pytest.raises(TypeError, match="FullyConnected: expected X to be"):
        _classifier(backend).forward(np.zeros((2, N_IN)))


def test_set_params_with_the_wrong_number_of_layers(backend):
    model = _classifier(backend)
    with pytest.raises(ValueError, match="Sequential.set_params: the summary has 1 layers"):
        model.set_params({"layers": [model.layers[0].summary()]})


@pytest.mark.parametrize("bad", [-1, 3])
@pytest.mark.parametrize("on_device", [False, True])
def test_out_of_range_labels_are_refused(backend64, bad, on_device):
    model = _classifier(backend64)
    X, y = _data()
    y = y.copy()
    y[5] = bad
    if on_device:
        X, y = backend64.asarray(X), backend64.asarray(y)
    msg = r"Sequential.fit: class labels must lie in \[0, 3\) for an output of 3 classes"
    with pytest.raises(ValueError, match=msg):
        model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    with pytest.raises(ValueError, match="Sequential.evaluate: class labels"):
        model.evaluate(X, y)


def test_nan_after_an_update_names_the_layer(backend64):
    model = _classifier(backend64, softmax=False)
    X, _ = _data()
    out = model.forward(backend64.asarray(X))
    model.backward(backend64.asarray(np.full(tuple(out.shape), np.nan)))
    with pytest.raises(FloatingPointError, match=r"FullyConnected: parameter\(s\) \['W', 'b'\] hold NaN"):
        model.update()
