"""Checkpoints: round-trips across backends, and every kind of damaged or forged file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import anyml
from anyml import checkpoint
from anyml.checkpoint import load, register_layer, save
from anyml.layers.base import LayerBase
from anyml.layers.conv import Conv2D
from anyml.layers.dense import FullyConnected
from anyml.layers.norm import BatchNorm2D
from anyml.layers.pool import Pool2D
from anyml.layers.shape import Flatten
from anyml.layers.softmax import Softmax
from anyml.model import Sequential
from anyml.optimizers import SGD, Adam
from anyml.schedulers import ExponentialScheduler, KingScheduler
from anyml.testing import assert_close
from anyml.wrappers import Dropout


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((24, 6, 6, 1)), np.arange(24) % 3


def _cnn(be, dropout=0.0):
    dense = FullyConnected(3, optimizer="Adam(lr=0.01)", backend=be)
    return Sequential([
        Conv2D(4, (3, 3), pad=1, act_fn="ReLU", optimizer="Adam(lr=0.01)", backend=be),
        BatchNorm2D(backend=be),
        Pool2D((2, 2), stride=2, backend=be),
        Flatten(backend=be),
        Dropout(dense, dropout) if dropout else dense,
        Softmax(backend=be),
    ], loss="CrossEntropy(reduction='mean')")


def _trained(be=None, dropout=0.0):
    be = be or anyml.make_backend("numpy", dtype="float64", seed=0)
    model = _cnn(be, dropout)
    model.fit(*_data(), epochs=2, batch_size=8, verbose=False)
    return model


def _to_npz(path):
    """Rewrite a checkpoint as the ``.npz`` archive of format version 2 (what anyml wrote before it
    wrote safetensors), with its digest: the tests below edit such archives."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        text = f.metadata()["anyml"]
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    header = json.loads(text)
    header["version"] = 2
    text = json.dumps(header, sort_keys=True)
    _write(path, {**arrays, "__anyml__": np.array(text),
                  "__sha256__": np.array(checkpoint._digest(text, arrays))})


@pytest.fixture
def saved(tmp_path):
    """A trained float64 CNN on NumPy and the path of its checkpoint, an ``.npz`` archive of format
    version 2 (see ``tests/bad_input/test_checkpoint.py`` for the safetensors files)."""
    model = _trained()
    path = tmp_path / "model.npz"
    model.save(path)
    _to_npz(path)
    return model, path


def _entries(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path, entries):
    with open(path, "wb") as f:
        np.savez(f, **entries)


# ---------------------------------------------------------------------------- round trips
def test_round_trip_across_backends_and_back(saved, backend64, tmp_path):
    model, path = saved
    X, y = _data()
    moved = Sequential.load(path, backend=backend64)
    assert moved.backend is backend64
    assert [type(layer).__name__ for layer in moved] == [type(layer).__name__ for layer in model]
    assert_close(moved.predict(X), model.predict(X), backend=backend64, rtol=1e-12, atol=1e-12)
    # the optimizer state came along: one more epoch gives the same parameters on both
    for m in (model, moved):
        m.fit(X, y, epochs=1, batch_size=8, shuffle=False, verbose=False)
    assert_close(moved.predict(X), model.predict(X), backend=backend64, rtol=1e-12, atol=1e-12)
    back_path = tmp_path / "back.npz"
    moved.save(back_path)
    back = Sequential.load(back_path, backend=anyml.make_backend("numpy", dtype="float64"))
    np.testing.assert_allclose(back.predict(X), anyml.to_numpy(moved.predict(X)), rtol=1e-12,
                               atol=1e-12)
    for layer, ref in zip(back.layers, moved.layers, strict=True):
        for name, value in ref.parameters.items():
            np.testing.assert_array_equal(layer.parameters[name], anyml.to_numpy(value))


def test_settings_flags_and_optimizer_state_are_restored(tmp_path):
    model = _trained(dropout=0.25)
    model.layers[0].freeze()
    model.eval()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = load(path, backend=anyml.make_backend("numpy", dtype="float64"))
    assert isinstance(loaded, Sequential)
    assert loaded.loss == model.loss
    assert isinstance(loaded.layers[4], Dropout) and loaded.layers[4].p == 0.25
    assert loaded.layers[2].kernel_shape == (2, 2)
    assert not loaded.layers[0].trainable and loaded.layers[1].trainable
    assert not any(o.training for o in loaded._modules())
    for new, old in zip(loaded.layers, model.layers, strict=True):
        assert new.optimizer == old.optimizer
        assert new.optimizer.cur_step == old.optimizer.cur_step
        assert repr(new) == repr(old)
        for pname, state in old.optimizer.cache.items():
            for key, value in state.items():
                np.testing.assert_array_equal(new.optimizer.cache[pname][key], value)
        for name, value in old.parameters.items():
            np.testing.assert_array_equal(new.parameters[name], value)
    bn = loaded.layers[1]
    assert "running_mean" in bn.parameters and "running_mean" not in bn.gradients


def test_single_layer_and_wrapper_round_trip(backend, tmp_path):
    layer = Dropout(FullyConnected(5, act_fn="Tanh", optimizer="RMSProp(lr=0.1)", backend=backend),
                    0.5)
    X = backend.rng.normal((3, 4))
    layer.forward(X)
    layer.backward(backend.rng.normal((3, 5)))
    layer.update()
    path = tmp_path / "layer.npz"
    save(layer, path)
    loaded = load(path, backend=backend)
    assert isinstance(loaded, Dropout) and isinstance(loaded.base_layer, FullyConnected)
    assert loaded.p == 0.5 and str(loaded.act_fn) == "Tanh"
    loaded.eval()
    layer.eval()
    assert_close(loaded.forward(X), anyml.to_numpy(layer.forward(X)), backend=backend, rtol=0,
                 atol=0)
    assert loaded.optimizer.cache.keys() == layer.optimizer.cache.keys()


def test_layer_without_parameters_yet(tmp_path):
    be = anyml.make_backend("numpy", dtype="float64", seed=0)
    path = tmp_path / "lazy.npz"
    save(FullyConnected(4, backend=be), path)
    loaded = load(path, backend=be)
    assert loaded.n_out == 4 and not loaded.is_initialized


def test_float32_checkpoint_loads_into_float64(tmp_path):
    model = _trained(anyml.make_backend("numpy", dtype="float32", seed=0))
    path = tmp_path / "m32.npz"
    model.save(path)
    _to_npz(path)
    assert _entries(path)["a0"].dtype == np.float32
    loaded = Sequential.load(path, backend=anyml.make_backend("numpy", dtype="float64"))
    assert loaded.layers[0].parameters["W"].dtype == np.float64
    np.testing.assert_array_equal(loaded.layers[0].parameters["W"],
                                  model.layers[0].parameters["W"].astype(np.float64))


def test_save_writes_exactly_the_path_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.ckpt"
    _trained().save(path)
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_registered_layer_round_trip(tmp_path):
    class Scale(LayerBase):
        def __init__(self, factor=2.0, optimizer=None, *, backend=None):
            super().__init__(optimizer, backend=backend)
            self.factor = factor

        def _config(self):
            return {"factor": self.factor}

        def forward(self, X, retain_derived=True):
            return X * self.factor

    be = anyml.make_backend("numpy", dtype="float64")
    path = tmp_path / "scale.npz"
    with pytest.raises(TypeError, match="register it with anyml.checkpoint.register_layer"):
        save(Scale(3.0, backend=be), path)
    monkey = dict(checkpoint._registered)
    try:
        register_layer(Scale)
        save(Scale(3.0, backend=be), path)
        assert load(path, backend=be).factor == 3.0
    finally:
        checkpoint._registered.clear()
        checkpoint._registered.update(monkey)
    with pytest.raises(ValueError, match="unknown layer class 'Scale'"):
        load(path, backend=be)


def test_register_layer_refuses_other_classes():
    with pytest.raises(TypeError, match="register_layer: expected a LayerBase"):
        register_layer(dict)


def test_save_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="save: expected a layer or a Sequential"):
        save({"W": np.zeros(2)}, tmp_path / "x.npz")


def test_every_anyml_layer_is_registered():
    names = set(checkpoint.layer_classes())
    assert len(names) == 25  # the 21 layers of the API, Reshape, Permute, Identity and Dropout
    assert {"FullyConnected", "Conv2D", "LSTM", "RBM", "SparseEvolution", "Dropout", "Reshape",
            "Permute", "Identity"} <= names
    assert "LayerBase" not in names


# ---------------------------------------------------------------------------- damaged files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


def test_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{path.name}: not an anyml checkpoint"):
        load(path)


def test_bit_flip_in_the_raw_file(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    entries = _entries(path)
    needle = entries["a0"].tobytes()[:16]
    at = bytes(data).index(needle)
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path.name}: .*(damaged|digest)"):
        load(path)


def test_tampered_array(saved):
    _, path = saved
    entries = _entries(path)
    entries["a0"] = entries["a0"].copy()
    entries["a0"].flat[0] += 1e-12
    _write(path, entries)
    with pytest.raises(ValueError, match=rf"{path.name}: the SHA-256 digest does not match"):
        load(path)


def test_tampered_json(saved):
    _, path = saved
    entries = _entries(path)
    entries["__anyml__"] = np.array(str(entries["__anyml__"]).replace('"lr": 0.01', '"lr": 0.02'))
    _write(path, entries)
    with pytest.raises(ValueError, match=rf"{path.name}: the SHA-256 digest does not match"):
        load(path)


def test_header_that_is_not_json(saved):
    _, path = saved
    entries = _entries(path)
    entries["__anyml__"] = np.array("{not json")
    _write(path, entries)
    with pytest.raises(ValueError, match=rf"{path.name}: the header is not valid JSON"):
        load(path)


@pytest.mark.parametrize("entry", ["__anyml__", "__sha256__", "a3"])
def test_missing_entry(saved, entry):
    _, path = saved
    entries = _entries(path)
    del entries[entry]
    _write(path, entries)
    with pytest.raises(ValueError, match=rf"{path.name}: .*{entry}.*missing"):
        load(path)


def test_unexpected_entry(saved):
    _, path = saved
    entries = _entries(path)
    entries["payload"] = np.zeros(3)
    _write(path, entries)
    with pytest.raises(ValueError, match=rf"{path.name}: unexpected entries \['payload'\]"):
        load(path)


def _forge(path, edit):
    """Rewrite the header with ``edit`` and a matching digest (what a forger would do)."""
    entries = _entries(path)
    header = json.loads(str(entries["__anyml__"]))
    edit(header)
    text = json.dumps(header)
    arrays = {k: v for k, v in entries.items() if not k.startswith("__")}
    entries["__anyml__"] = np.array(text)
    entries["__sha256__"] = np.array(checkpoint._digest(text, arrays))
    _write(path, entries)


@pytest.mark.parametrize("name", ["EvilLayer", "os.system", "__import__('os')", "LayerBase"])
def test_unknown_layer_class(saved, name):
    _, path = saved

    def edit(header):
        header["layers"][0]["class"] = name

    _forge(path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}: layer 0: unknown layer class"):
        load(path)


def test_unknown_wrapper_class(tmp_path):
    path = tmp_path / "w.npz"
    _trained(dropout=0.1).save(path)
    _to_npz(path)

    def edit(header):
        header["layers"][4]["summary"]["hyperparameters"]["wrappers"][0]["wrapper"] = "Evil"

    _forge(path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}: layer 4 .*unknown wrapper class 'Evil'"):
        load(path)


def test_settings_the_layer_rejects(saved):
    _, path = saved

    def edit(header):
        header["layers"][4]["summary"]["hyperparameters"]["n_out"] = -1

    _forge(path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}: layer 4 \(FullyConnected\): cannot rebuild"):
        load(path)


def test_newer_format_version(saved):
    _, path = saved

    def edit(header):
        header["version"] = checkpoint.FORMAT_VERSION + 1

    _forge(path, edit)
    newer = checkpoint.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"checkpoint format version {newer} is not supported"):
        load(path)


def test_array_listing_must_match(saved):
    _, path = saved

    def edit(header):
        header["arrays"]["a0"]["shape"] = [1]

    _forge(path, edit)
    with pytest.raises(ValueError, match=rf"{path.name}: entry 'a0' is <f8"):
        load(path)


@pytest.mark.parametrize("content", ["text", "npy", "pickle", "plain-npz"])
def test_files_that_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "x.npz"
    if content == "text":
        path.write_text("hello")
    elif content == "npy":
        np.save(path.open("wb"), np.zeros(3))
    elif content == "pickle":
        with open(path, "wb") as f:
            np.savez(f, obj=np.array([{"a": 1}], dtype=object))
    else:
        _write(path, {"W": np.zeros(3)})
    with pytest.raises(ValueError, match=rf"{path.name}: "):
        load(path)


# ---------------------------------------------------------------------------- schedules resume
def _king_adam():
    return Adam(lr=0.1, lr_scheduler=KingScheduler(initial_lr=0.1, patience=3, decay=0.5))


def _exp_sgd():
    return SGD(lr=0.1, momentum=0.5,
               lr_scheduler=ExponentialScheduler(initial_lr=0.1, stage_length=1, decay=0.5))


def _steps(layer, be, start, stop):
    """Updates ``start .. stop - 1`` of a small regression, a flat loss after step 4."""
    rng = np.random.default_rng(7)
    X, T = rng.standard_normal((stop, 5, 3)), rng.standard_normal((stop, 5, 2))
    for t in range(start, stop):
        Y = layer.forward(be.from_host(X[t]))
        layer.backward(Y - be.from_host(T[t]))
        layer.update(cur_loss=1.0 if t >= 4 else 2.0 - 0.1 * t)


@pytest.mark.parametrize(("make", "lr"), [(_king_adam, 0.05), (_exp_sgd, 0.1 * 0.5**8)],
                         ids=["king", "exponential"])
def test_schedule_state_survives_save_and_load(backend, tmp_path, make, lr):
    layer = FullyConnected(2, optimizer=make(), backend=backend)
    _steps(layer, backend, 0, 8)
    assert layer.optimizer.learning_rate(1.0) == pytest.approx(lr, rel=1e-15)
    path = tmp_path / "sched.npz"
    save(layer, path)
    loaded = load(path, backend=backend)
    assert loaded.optimizer.cur_step == 8
    assert loaded.optimizer.state() == layer.optimizer.state()
    assert loaded.optimizer.learning_rate(1.0) == pytest.approx(lr, rel=1e-15)


@pytest.mark.parametrize("make", [_king_adam, _exp_sgd], ids=["king", "exponential"])
def test_training_resumed_from_a_checkpoint_matches_uninterrupted_training(backend64, tmp_path,
                                                                          make):
    layer = FullyConnected(2, optimizer=make(), backend=backend64)
    _steps(layer, backend64, 0, 9)  # a KingScheduler decays at step 7, then at 11 and 15
    assert layer.optimizer.learning_rate(1.0) < 0.1
    path = tmp_path / "mid.npz"
    save(layer, path)
    resumed = load(path, backend=backend64)
    _steps(layer, backend64, 9, 17)
    _steps(resumed, backend64, 9, 17)
    assert resumed.optimizer.state() == layer.optimizer.state()
    expected = 0.0125 if isinstance(layer.optimizer.lr_scheduler, KingScheduler) else 0.1 * 0.5**17
    assert resumed.optimizer.learning_rate(1.0) == pytest.approx(expected, rel=1e-15)
    for name, value in layer.parameters.items():
        assert_close(resumed.parameters[name], anyml.to_numpy(value), backend=backend64,
                     rtol=1e-12, atol=1e-12, err_msg=name)


def test_version_1_checkpoint_still_loads(tmp_path):
    be = anyml.make_backend("numpy", dtype="float64", seed=0)
    layer = FullyConnected(2, optimizer=_king_adam(), backend=be)
    _steps(layer, be, 0, 6)
    path = tmp_path / "v1.npz"
    save(layer, path)
    _to_npz(path)

    def as_version_1(header):  # the step count beside the summary, no optimizer state in it
        header["version"] = 1
        for entry in header["layers"]:
            state = entry["summary"]["hyperparameters"]["optimizer"].pop("state")
            entry["optimizer_step"] = state["cur_step"]

    _forge(path, as_version_1)
    loaded = load(path, backend=be)
    assert loaded.optimizer.cur_step == 6
    assert loaded.optimizer.lr_scheduler.current_lr == 0.1  # version 1 kept no scheduler state
    for name, value in layer.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value)
