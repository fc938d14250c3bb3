"""Thread control: set_num_threads reaches the BLAS pool (and PyTorch's); fit uses the default and
restores the previous sizes; the environment wins."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import anyml
from anyml import _threads
from anyml.layers import FullyConnected

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture
def restore_threads():
    controller = threadpoolctl.ThreadpoolController()
    saved = controller.info()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    yield
    anyml.set_num_threads(None)
    for entry in saved:
        threadpoolctl.threadpool_limits(limits=entry["num_threads"], user_api=entry["user_api"])
    if torch is not None:
        torch.set_num_threads(torch_before)


def test_set_num_threads_reaches_blas_and_torch(restore_threads):
    torch = pytest.importorskip("torch")
    anyml.set_num_threads(1)
    assert anyml.get_num_threads() == 1
    assert _blas_threads() <= {1}
    assert torch.get_num_threads() == 1
    anyml.set_num_threads(None)
    assert anyml.get_num_threads() == _threads.default_num_threads()


def test_fit_runs_with_the_default_and_restores(restore_threads, monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANYML_NUM_THREADS", "1")
    threadpoolctl.threadpool_limits(limits=2, user_api="blas")
    before = _blas_threads()
    seen = []
    be = anyml.make_backend("numpy", seed=0)
    model = anyml.Sequential([FullyConnected(2, backend=be)], loss="mse")
    X = np.zeros((8, 3))
    model.fit(X, np.zeros((8, 2)), epochs=1, verbose=False,
              callbacks=[lambda epoch, logs: seen.append(_blas_threads())])
    assert seen == [{1}] or not before  # (no BLAS library loaded: nothing to limit)
    assert _blas_threads() == before


def test_default_is_half_the_cpus_and_steps_aside_for_the_environment(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ANYML_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_threads, "_cpus", lambda: 2)
    assert _threads.default_num_threads() == 1
    monkeypatch.setattr(_threads, "_cpus", lambda: 16)
    assert _threads.default_num_threads() == 8
    monkeypatch.setattr(_threads, "_cpus", lambda: 1)
    assert _threads.default_num_threads() == 1
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert _threads.default_num_threads() is None
    monkeypatch.setenv("ANYML_NUM_THREADS", "3")
    assert _threads.default_num_threads() == 3
    monkeypatch.setenv("ANYML_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="ANYML_NUM_THREADS must be a positive integer"):
        _threads.default_num_threads()


def test_bad_counts():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="set_num_threads"):
            anyml.set_num_threads(bad)
