"""The example scripts run end to end at a reduced size on several backends and write checkpoints."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import anyml
from anyml.checkpoint import load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BACKENDS = ["numpy", "array-api-strict", "torch"]


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module


def _needs(backend):
    try:
        anyml.make_backend(backend)
    except anyml.BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("backend", BACKENDS)
def test_digits_cnn(examples, backend, tmp_path):
    pytest.importorskip("sklearn", reason="examples/digits_cnn.py needs scikit-learn "
                                          "(the 'examples' extra)")
    _needs(backend)
    result = examples("digits_cnn").main(["--backend", backend, "--limit", "160", "--epochs", "1",
                                          "--batch-size", "40", "--out", str(tmp_path),
                                          "--no-progress"])
    assert result["checkpoint"] == tmp_path / "digits_cnn.safetensors"
    assert result["checkpoint"].is_file()
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["reloaded_accuracy"] == result["accuracy"]
    assert len(result["history"]["loss"]) == 1
    model = load(result["checkpoint"], backend=anyml.make_backend("numpy"))
    assert [type(layer).__name__ for layer in model][:3] == ["Conv2D", "BatchNorm2D", "Pool2D"]
    if result["plot"] is not None:
        assert result["plot"].is_file()


def test_digits_cnn_defaults_reach_97_percent(examples, tmp_path):
    """The README's main job, as a user runs it: default settings on NumPy (a few seconds)."""
    pytest.importorskip("sklearn", reason="examples/digits_cnn.py needs scikit-learn")
    result = examples("digits_cnn").main(["--out", str(tmp_path), "--no-progress"])
    assert result["accuracy"] >= 0.97


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_char_lstm(examples, backend, tmp_path, capsys):
    _needs(backend)
    result = examples("char_lstm").main(["--backend", backend, "--limit", "600", "--epochs", "2",
                                         "--hidden", "16", "--seq-len", "12", "--stride", "6",
                                         "--sample-every", "1", "--sample-chars", "20",
                                         "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert "--- sample after epoch 1 ---" in out
    assert len(result["sample"]) == 12 + 20
    assert result["checkpoint"].is_file()
    # anyml's own layers only: the checkpoint loads without this script
    model = load(result["checkpoint"], backend=anyml.make_backend("numpy"))
    assert [type(layer).__name__ for layer in model] == ["LSTM", "Permute", "Conv1D"]
    assert np.all(np.isfinite(result["history"]["loss"]))
    # one scale: the history and the final line are per character (a 38-letter alphabet: < log 38)
    assert all(0 < v < np.log(40) for v in result["history"]["loss"] + result["history"]["val_loss"])
    assert f"train loss {result['history']['loss'][-1]:.3f}" in out
    sampled = examples("char_lstm").main(["--sample", str(result["checkpoint"]), "--prompt", "jack",
                                          "--sample-chars", "15", "--backend", "numpy"])
    assert sampled["sample"].startswith("jack") and len(sampled["sample"]) == 4 + 15


def test_examples_honour_anyml_backend_unless_backend_is_given(examples, monkeypatch):
    common = examples("_common")
    monkeypatch.setenv("ANYML_BACKEND", "array-api-strict")
    assert common.backend_name(common.parser("x", epochs=1, batch_size=1, lr=0.1).parse_args([])) \
        == "array-api-strict"
    args = common.parser("x", epochs=1, batch_size=1, lr=0.1).parse_args(["--backend", "numpy"])
    assert common.backend_name(args) == "numpy"
    monkeypatch.delenv("ANYML_BACKEND")
    assert common.backend_name(common.parser("x", epochs=1, batch_size=1, lr=0.1).parse_args([])) \
        == "numpy"
    monkeypatch.setenv("ANYML_BACKEND", "tpu")
    with pytest.raises(SystemExit, match="ANYML_BACKEND='tpu'"):
        common.backend_name(common.parser("x", epochs=1, batch_size=1, lr=0.1).parse_args([]))


@pytest.mark.parametrize("backend", ["numpy", "array-api-strict"])
def test_rbm_digits(examples, backend, tmp_path):
    pytest.importorskip("sklearn", reason="examples/rbm_digits.py needs scikit-learn "
                                          "(the 'examples' extra)")
    _needs(backend)
    result = examples("rbm_digits").main(["--backend", backend, "--limit", "200", "--epochs", "2",
                                          "--hidden", "16", "--out", str(tmp_path),
                                          "--no-progress"])
    assert result["checkpoint"].is_file()
    assert type(load(result["checkpoint"], backend=anyml.make_backend("numpy"))).__name__ == "RBM"
    assert 0.0 <= result["accuracy"] <= 1.0
    for scores in (result["rbm_accuracy"], result["pixel_accuracy"]):  # both reported
        assert set(scores) == {"clean", "noisy"} and all(0 <= v <= 1 for v in scores.values())
    assert result["wrong_pixels"]["noisy"] == pytest.approx(0.15, abs=0.02)
