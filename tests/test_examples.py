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
    model = load(result["checkpoint"], backend=anyml.make_backend("numpy"))
    assert [type(layer).__name__ for layer in model] == ["LSTM", "TimeToRows", "FullyConnected",
                                                        "RowsToTime"]
    assert np.all(np.isfinite(result["history"]["loss"]))


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
