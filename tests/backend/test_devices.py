"""Device discipline on the emulated CUDA device: every array anyml makes lands on the backend's
device (device 1, which is not the current one), for every layer, optimizer, loss, ``fit`` and
checkpoint load, without the caller entering the device."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import anyml
from anyml.backend import _standin

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("gpu_census")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def be():
    _standin.set_ambient_device(None)  # strict: nothing runs on device 1 unless anyml enters it
    backend = anyml.make_backend("gpulike", dtype="float32", seed=0)
    assert backend.device.id == 1 and _standin.Device().id == 0
    return backend


def _arrays(value, found=None):
    """Every device array in nested dicts, lists and tuples."""
    found = [] if found is None else found
    if isinstance(value, _standin.ndarray):
        found.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _arrays(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _arrays(v, found)
    return found


def _assert_on(be, *values, what=""):
    arrays = _arrays(list(values))
    off = [tuple(a.shape) for a in arrays if a.device != be.device]
    assert not off, f"{what}: arrays of shape {off} are not on {be.device}"


def _state(layer):
    base = getattr(layer, "base_layer", layer)
    return [base.parameters, base.gradients, base.optimizer.cache, base._caches]


LAYER_NAMES = ["FullyConnected", "SparseEvolution", "Conv1D", "Conv2D", "Deconv2D", "Pool2D",
               "BatchNorm1D", "BatchNorm2D", "LayerNorm1D", "LayerNorm2D", "Softmax", "Flatten", "Add",
               "Multiply", "RNNCell", "LSTMCell", "RNN", "LSTM", "Embedding", "DotProductAttention",
               "RBM"]


def test_the_census_lists_the_21_layers(census):
    assert list(census.LAYERS) == LAYER_NAMES


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_array_of_a_layer_stays_on_the_device(census, be, name, tmp_path):
    make, spec = census.LAYERS[name]
    rng = np.random.default_rng(0)
    layer = make(be)
    _assert_on(be, _state(layer), what="after construction")
    inputs = census._inputs(be, spec, rng)
    out = layer.forward(*inputs)
    _assert_on(be, out, _state(layer), what="after forward")
    dY = None if name == "RBM" else census._grad_like(be, out, rng)
    dX = layer.backward() if dY is None else layer.backward(dY)
    _assert_on(be, dX, _state(layer), what="after backward")
    layer.update()
    _assert_on(be, _state(layer), what="after update")
    layer.flush_gradients()
    _assert_on(be, _state(layer), what="after flush_gradients")
    anyml.save(layer, tmp_path / "layer.npz")
    loaded = anyml.load(tmp_path / "layer.npz", backend=be)
    _assert_on(be, _state(loaded), what="after load")
    assert len(_arrays(_state(loaded)[0])) == len(_arrays(_state(layer)[0]))


@pytest.mark.parametrize("spec", ["SGD(lr=0.01, momentum=0.9)", "AdaGrad()", "RMSProp()", "Adam()",
                                  "Adam(clip_norm=1.0)"])
def test_optimizer_state_and_results_stay_on_the_device(be, spec):
    from anyml.optimizers import get_optimizer

    opt = get_optimizer(spec)
    p, g = be.rng.normal((4, 3)), be.rng.normal((4, 3))
    for _ in range(2):
        p = opt(p, g, "W")
        opt.step()
    _assert_on(be, p, opt.cache, what=spec)


@pytest.mark.parametrize("spec", ["CrossEntropy()", "SquaredError()"])
def test_losses_stay_on_the_device(be, spec):
    from anyml.losses import get_loss

    loss = get_loss(spec)
    y = be.asarray(np.eye(3)[[0, 2, 1, 1]])
    with be.activate():
        y_pred = be.xp.abs(be.rng.normal((4, 3))) + 0.1
        y_pred = y_pred / be.xp.sum(y_pred, axis=1, keepdims=True)
    _assert_on(be, loss.loss(y, y_pred), loss.grad(y, y_pred), what=spec)


def test_fit_evaluate_predict_and_load_stay_on_the_device(census, be, tmp_path):
    model = census._digits_model(be)
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(64, 8, 8, 1)), rng.integers(0, 10, 64)
    model.fit(X, y, epochs=1, batch_size=32, verbose=False)
    _assert_on(be, [_state(layer) for layer in model.layers], what="after fit")
    model.evaluate(X, y)
    _assert_on(be, model.predict(X), what="predict")
    anyml.save(model, tmp_path / "model.npz")
    loaded = anyml.load(tmp_path / "model.npz", backend=be)
    _assert_on(be, [_state(layer) for layer in loaded.layers], loaded.predict(X), what="after load")


def test_the_random_generator_draws_on_the_device_in_the_target_dtype(be):
    """One kernel per draw (no float64 draw and cast), on the device, never ``high``."""
    c = be.counters
    for draw in (lambda: be.rng.uniform((5,)), lambda: be.rng.normal((5,)),
                 lambda: be.rng.integers(0, 3, (5,)), lambda: be.rng.permutation(5)):
        c.reset()
        out = draw()
        _assert_on(be, out, what="rng")
        assert c.launches == 1 and c.syncs == 0
    assert be.rng.uniform((3,)).dtype == be.xp.float32
    assert be.rng.normal((3,), dtype=be.xp.float64).dtype == be.xp.float64
    _assert_on(be, be.rng.bernoulli((5,), 0.5), what="bernoulli")
