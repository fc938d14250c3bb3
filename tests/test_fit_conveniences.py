"""Sequential conveniences: the model-wide optimizer, loss aliases, validation_split, fit on an
iterable of minibatches, global-norm gradient clipping, the readable table, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import anyml
from anyml.layers import Conv2D, Flatten, FullyConnected, Softmax
from anyml.losses import CrossEntropy, SquaredError
from anyml.optimizers import SGD, Adam
from anyml.testing import assert_close
from anyml.wrappers import Dropout

ROOT = Path(__file__).resolve().parents[1]


def _data(seed=0, n=48):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def _layers(be, **kw):
    return [FullyConnected(8, act_fn="Tanh", backend=be, **kw), FullyConnected(3, backend=be, **kw),
            Softmax(backend=be)]


# ---------------------------------------------------------------------------- optimizer
def test_layers_without_an_optimizer_take_the_models(backend):
    own = FullyConnected(8, act_fn="Tanh", optimizer="SGD(lr=0.5)", backend=backend)
    hidden = FullyConnected(4, backend=backend)
    model = anyml.Sequential([own, Dropout(hidden, 0.1), FullyConnected(3, backend=backend),
                              Softmax(backend=backend)], loss="ce", optimizer="RMSProp(lr=0.002)")
    assert own.optimizer == SGD(lr=0.5)
    assert str(hidden.optimizer) == str(model.layers[2].optimizer) == str(model.optimizer)
    assert hidden.optimizer is not model.layers[2].optimizer  # each layer its own state
    model.set_optimizer("Adam(lr=0.01)")
    assert hidden.optimizer == Adam(lr=0.01) and own.optimizer == SGD(lr=0.5)


def test_the_default_is_adam_not_sgd(backend):
    model = anyml.Sequential(_layers(backend), loss="CrossEntropy")
    assert all(isinstance(layer.optimizer, Adam) for layer in model.layers[:2])
    alone = FullyConnected(3, backend=backend)
    assert isinstance(alone.optimizer, SGD)  # a layer on its own keeps numpy-ml's default


def test_model_optimizer_trains_like_per_layer_optimizers(make_backend_for):
    X, y = _data()
    a = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce", optimizer="Adam(lr=0.01)")
    b = anyml.Sequential(_layers(make_backend_for(seed=0), optimizer="Adam(lr=0.01)"), loss="ce")
    ha = a.fit(X, y, epochs=2, batch_size=16, verbose=False)
    hb = b.fit(X, y, epochs=2, batch_size=16, verbose=False)
    assert ha == hb


def test_checkpoint_keeps_the_layers_optimizers(backend, tmp_path):
    X, y = _data()
    model = anyml.Sequential(_layers(backend), loss="ce", optimizer="Adam(lr=0.01)")
    model.fit(X, y, epochs=1, batch_size=16, verbose=False)
    anyml.save(model, tmp_path / "m.npz")
    loaded = anyml.load(tmp_path / "m.npz", backend=backend)
    assert loaded.layers[0].optimizer == Adam(lr=0.01)
    assert loaded.layers[0].optimizer.cur_step == model.layers[0].optimizer.cur_step


# ---------------------------------------------------------------------------- losses
def test_loss_aliases():
    be = anyml.make_backend("numpy")
    assert anyml.Sequential([FullyConnected(2, backend=be)], loss="mse").loss == SquaredError()
    model = anyml.Sequential(_layers(be), loss="cross_entropy")
    assert model.loss == CrossEntropy()
    assert anyml.losses.get_loss("categorical_crossentropy") == CrossEntropy()


# ---------------------------------------------------------------------------- validation_split
def test_validation_split_holds_out_the_last_examples(make_backend_for):
    X, y = _data(n=40)
    a = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    b = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    ha = a.fit(X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=False)
    hb = b.fit(X[:30], y[:30], epochs=2, batch_size=8, validation_data=(X[30:], y[30:]), verbose=False)
    assert ha == hb
    assert sorted(ha) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(X, y, validation_split=0.25, validation_data=(X, y), verbose=False)
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(X[:3], y[:3], validation_split=0.1, verbose=False)
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(X, y, validation_split=1.0, verbose=False)


# ---------------------------------------------------------------------------- iterables
def _batches(X, y, size):
    for start in range(0, len(X), size):
        yield X[start:start + size], y[start:start + size]


def test_fit_on_iterables_equals_fit_on_arrays(make_backend_for):
    X, y = _data()
    ref = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    expected = ref.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=False)
    as_list = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    assert as_list.fit(list(_batches(X, y, 16)), epochs=3, verbose=False) == expected
    as_function = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    assert as_function.fit(lambda: _batches(X, y, 16), epochs=3, verbose=False) == expected
    endless = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")

    def forever():
        while True:
            yield from _batches(X, y, 16)

    assert endless.fit(forever(), epochs=3, steps_per_epoch=3, verbose=False) == expected
    assert as_list.evaluate(_batches(X, y, 10)) == pytest.approx(as_list.evaluate(X, y), rel=1e-6)


def test_a_one_shot_generator_says_what_to_pass(backend):
    X, y = _data()
    model = anyml.Sequential(_layers(backend), loss="ce")
    history = model.fit(_batches(X, y, 16), epochs=1, verbose=False)
    assert len(history["loss"]) == 1
    with pytest.raises(ValueError, match="a generator is read once"):
        model.fit(_batches(X, y, 16), epochs=2, verbose=False)
    with pytest.raises(TypeError, match=r"each minibatch must be a pair \(X, y\)"):
        model.fit([X], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="class labels must lie in"):
        model.fit([(X, y + 5)], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="expected targets y"):
        model.fit(X, verbose=False)


def test_fit_on_a_memory_mapped_array(backend, tmp_path):
    X, y = _data()
    Xm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=X.shape)
    Xm[:] = X
    Xm.flush()
    Xr = np.load(tmp_path / "X.npy", mmap_mode="r")
    be2 = anyml.make_backend(backend.name, device=backend.device, dtype=backend.dtype_name, seed=0)
    a = anyml.Sequential(_layers(anyml.make_backend(backend.name, device=backend.device,
                                                    dtype=backend.dtype_name, seed=0)), loss="ce")
    b = anyml.Sequential(_layers(be2), loss="ce")
    assert a.fit(Xr, y, epochs=2, batch_size=16, verbose=False) == b.fit(X, y, epochs=2, batch_size=16,
                                                                         verbose=False)


# ---------------------------------------------------------------------------- global-norm clipping
def test_global_norm_clipping_matches_torch(backend64):
    torch = pytest.importorskip("torch")
    X, y = _data()
    model = anyml.Sequential(_layers(backend64), loss="ce", optimizer="SGD(lr=0.1)", clip_norm=0.05)
    model.forward(backend64.asarray(X), retain_derived=False)
    before = [{k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()} for layer in model]
    # torch: the same network, the same loss, clip_grad_norm_ then one SGD step
    tparams = [torch.tensor(before[i][k], requires_grad=True) for i in (0, 1) for k in ("W", "b")]
    W1, b1, W2, b2 = tparams
    logits = torch.tanh(torch.tensor(X) @ W1 + b1) @ W2 + b2
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y), reduction="sum")
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(tparams, float("inf")))  # the norm, no clipping
    assert norm > 0.05  # the clip is active
    scale = 0.05 / norm  # torch's own clip divides by norm + 1e-6; anyml by the norm itself
    model.train_on_batch(X, y)
    for i, (layer_index, name) in enumerate([(0, "W"), (0, "b"), (1, "W"), (1, "b")]):
        expected = tparams[i].detach().numpy() - 0.1 * scale * tparams[i].grad.numpy()
        assert_close(model.layers[layer_index].parameters[name], expected, backend=backend64,
                     rtol=1e-10, atol=1e-12)


def test_global_norm_clipping_leaves_small_gradients_alone(make_backend_for):
    X, y = _data()
    a = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce", clip_norm=1e6)
    b = anyml.Sequential(_layers(make_backend_for(seed=0)), loss="ce")
    assert a.fit(X, y, epochs=1, verbose=False) == b.fit(X, y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="clip_norm"):
        anyml.Sequential(_layers(make_backend_for()), loss="ce", clip_norm=0)


# ---------------------------------------------------------------------------- the table
def test_describe_and_count_params(backend):
    model = anyml.Sequential([Conv2D(4, (3, 3), pad=1, act_fn="ReLU", backend=backend),
                              Flatten(backend=backend),
                              Dropout(FullyConnected(10, optimizer="SGD(lr=0.1)", backend=backend), 0.2),
                              Softmax(backend=backend)], loss="CrossEntropy")
    assert "? (unbuilt)" in model.describe()
    assert model.count_params() == 0
    text = model.describe(input_shape=(8, 8, 1))
    lines = text.splitlines()
    assert lines[0].startswith(f"Sequential on {backend.name}") and backend.dtype_name in lines[0]
    rows = {line.split()[1]: line for line in lines if line[:1].isdigit()}
    assert "(n, 8, 8, 4)" in rows["Conv2D"] and rows["Conv2D"].split()[-1] == "Adam(lr=0.001)"
    assert "(n, 10)" in rows["Dropout(p=0.2)"] and "2,570" in rows["Dropout(p=0.2)"]
    assert "SGD(lr=0.1)" in rows["Dropout(p=0.2)"]
    assert model.count_params() == 3 * 3 * 1 * 4 + 4 + 256 * 10 + 10
    model.layers[0].freeze()
    assert model.count_params(trainable_only=True) == 2570
    assert "parameters: 2,610 (2,570 trainable, 40 non-trainable)" in str(model)
    assert model.summary()["layers"][0]["layer"] == "Conv2D"  # summary() stays the set_params dict


def test_layer_repr_shows_hyperparameters():
    layer = FullyConnected(16, act_fn="ReLU", optimizer="Adam(lr=0.01)", backend="numpy")
    text = repr(layer)
    assert text.startswith("FullyConnected(")
    for part in ("n_out=16", "act_fn='ReLU'", "init='glorot_uniform'", "optimizer='Adam(lr=0.01"):
        assert part in text
    assert "optimizer" not in repr(Softmax(backend="numpy"))


# ---------------------------------------------------------------------------- Ctrl-C
_CTRL_C_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import anyml
    from anyml.layers import FullyConnected, Softmax

    be = anyml.make_backend(sys.argv[1], seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 2, 16)
    steps = []

    def batches():
        while True:
            steps.append(len(steps))
            if len(steps) == 3:
                print("ready", flush=True)   # the parent sends SIGINT now
            time.sleep(0.05)
            yield X, y

    model = anyml.Sequential([FullyConnected(2, backend=be), Softmax(backend=be)], loss="ce")
    history = model.fit(batches(), epochs=1000, steps_per_epoch=4, verbose=True)
    print(json.dumps({"history": history, "interrupted": model.interrupted, "steps": len(steps)}),
          flush=True)
""")


@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_ctrl_c_stops_after_the_current_step_and_returns_the_history(backend_name, tmp_path):
    if backend_name == "torch":
        pytest.importorskip("torch")
    script = tmp_path / "train.py"
    script.write_text(_CTRL_C_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), backend_name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "ready":
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"] is True
    history = result["history"]
    # epoch 1 (4 steps) completed; the signal came during step 3, i.e. in epoch 1 ... or in epoch 2
    assert 1 <= len(history["loss"]) <= 2
    assert result["steps"] <= 5  # at most the step under way when the signal arrived, then stop
    assert "Interrupted: stopping after the current step" in err
    assert "(interrupted)" in out
