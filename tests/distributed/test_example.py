"""``examples/distributed_digits.py`` runs as a plain script (its MPI and torchrun runs are the
subject of ``test_processes.py``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from anyml.distributed import get_comm, set_comm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_distributed_digits_on_one_process(monkeypatch, tmp_path):
    pytest.importorskip("sklearn", reason="the example needs scikit-learn (the 'examples' extra)")
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "RANK",
                 "TORCHELASTIC_RUN_ID", "SLURM_STEP_NUM_TASKS", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    try:
        result = importlib.import_module("distributed_digits").main(
            ["--limit", "160", "--epochs", "1", "--batch-size", "40", "--no-progress",
             "--out", str(tmp_path)])
        assert result["size"] == 1 and get_comm().name == "single"
        assert 0.0 <= result["accuracy"] <= 1.0
    finally:
        set_comm(None)
