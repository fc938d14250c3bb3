"""Metrics: each against a plain NumPy computation, on every backend; the registry and its errors."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.metrics import METRICS, Accuracy, MeanAbsoluteError, MeanSquaredError, TopKAccuracy, get_metric


def _scores(seed=0, shape=(30, 7)):
    rng = np.random.default_rng(seed)
    out = rng.standard_normal(shape)
    y = rng.integers(0, shape[-1], size=shape[:-1])
    return out, y


@pytest.fixture
def active(backend):
    """The backend made current (its device), as fit and evaluate do around the metrics."""
    with backend.activate():
        yield backend


def _topk_reference(out, y, k):
    top = np.argsort(-out, axis=-1)[..., :k]
    return float(np.mean(np.any(top == y[..., None], axis=-1)) * out.shape[0])


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_top_k_accuracy_matches_argsort(active, backend, k):
    out, y = _scores()
    value = TopKAccuracy(k=k)(backend.asarray(y), backend.asarray(out))
    assert backend.owns(value) and value.ndim == 0
    np.testing.assert_allclose(float(anyml.to_numpy(value)), _topk_reference(out, y, k), rtol=1e-6)


def test_top_1_is_accuracy_and_one_hot_equals_indices(active, backend):
    out, y = _scores(1)
    o = backend.asarray(out)
    acc = float(anyml.to_numpy(Accuracy()(backend.asarray(y), o)))
    assert acc == float(anyml.to_numpy(TopKAccuracy(k=1)(backend.asarray(y), o)))
    assert acc == float(np.sum(np.argmax(out, -1) == y))
    assert acc == float(Accuracy()(backend.asarray(np.eye(7)[y]), o))
    assert float(TopKAccuracy(k=3)(backend.asarray(np.eye(7)[y]), o)) == _topk_reference(out, y, 3)


def test_sequence_outputs_average_over_time_steps(active, backend):
    out, y = _scores(2, shape=(6, 5, 4))  # (n_ex, n_t, classes)
    value = float(anyml.to_numpy(Accuracy()(backend.asarray(y), backend.asarray(out))))
    np.testing.assert_allclose(value, np.mean(np.argmax(out, -1) == y) * 6, rtol=1e-6)
    value = float(anyml.to_numpy(TopKAccuracy(k=2)(backend.asarray(y), backend.asarray(out))))
    np.testing.assert_allclose(value, _topk_reference(out, y, 2), rtol=1e-6)


def test_regression_metrics(active, backend):
    rng = np.random.default_rng(3)
    out, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
    o, t = backend.asarray(out), backend.asarray(y)
    mae = float(anyml.to_numpy(MeanAbsoluteError()(t, o)))
    np.testing.assert_allclose(mae, np.abs(out - y).mean(1).sum(), rtol=1e-5)
    mse = float(anyml.to_numpy(MeanSquaredError()(t, o)))
    np.testing.assert_allclose(mse, ((out - y) ** 2).mean(1).sum(), rtol=1e-5)


def test_registry_names_and_errors():
    assert get_metric("acc") == Accuracy()
    assert get_metric("top_k_accuracy") == TopKAccuracy(k=5)
    assert get_metric("TopKAccuracy(k=3)").name == "top_3_accuracy"
    assert get_metric("mean_absolute_error").name == "mae"
    assert str(get_metric("mse")) == "MeanSquaredError"
    assert get_metric(str(TopKAccuracy(k=4))) == TopKAccuracy(k=4)
    assert set(METRICS.names) >= {"Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError"}
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        get_metric("f1")
    with pytest.raises(ValueError, match="TopKAccuracy"):
        TopKAccuracy(k=0)


def test_model_reports_its_metrics(backend):
    from anyml.layers import FullyConnected, Softmax

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 5, 40)
    model = anyml.Sequential([FullyConnected(5, backend=backend), Softmax(backend=backend)],
                             loss="cross_entropy", metrics=["accuracy", "top_k_accuracy(k=2)"])
    history = model.fit(X, y, epochs=1, batch_size=40, shuffle=False, verbose=False)
    assert sorted(history) == ["accuracy", "loss", "top_2_accuracy"]
    scores = model.evaluate(X, y)
    probs = anyml.to_numpy(model.predict(X)).astype(np.float64)
    np.testing.assert_allclose(scores["top_2_accuracy"], _topk_reference(probs, y, 2) / 40, rtol=1e-6)
    np.testing.assert_allclose(scores["accuracy"], np.mean(np.argmax(probs, -1) == y), rtol=1e-6)
    reg = anyml.Sequential([FullyConnected(2, backend=backend)], loss="mse", metrics=["mae"])
    target = rng.standard_normal((40, 2))
    scores = reg.evaluate(X, target)
    pred = anyml.to_numpy(reg.predict(X)).astype(np.float64)
    np.testing.assert_allclose(scores["mae"], np.abs(pred - target).mean(), rtol=1e-5)
    np.testing.assert_allclose(scores["loss"], 0.5 * ((pred - target) ** 2).sum(1).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="distinct names"):
        anyml.Sequential([FullyConnected(2, backend=backend)], loss="mse", metrics=["mae", "mae"])
