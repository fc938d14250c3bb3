"""The test matrix itself (tests/conftest.py): under CI a missing CPU backend or oracle fails.

Each case runs a small part of the suite in a fresh interpreter in which ``import torch`` fails, and
checks that the part skips on a developer's machine but fails under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: An oracle test (``importorskip("torch")`` inside) and a torch backend test.
ORACLE = "tests/functional/test_pool.py::test_matches_torch"
BACKEND = "tests/layers/test_shape.py"


def _run(tmp_path: Path, target: str, ids: str, **env: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "torch"
    fake.mkdir(exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('torch is hidden for this test')\n")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CI", "ANYML_REQUIRE_BACKENDS", "ANYML_REQUIRE_GPU", "PYTEST_XDIST_WORKER")}
    environ.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", ANYML_TEST_BACKENDS=ids, **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-o", "addopts=", target], cwd=ROOT, env=environ, capture_output=True, text=True,
        timeout=300, check=False)


@pytest.mark.parametrize(("target", "ids"), [(ORACLE, "numpy"), (BACKEND, "torch")],
                         ids=["oracle", "backend"])
def test_a_missing_torch_skips_locally_and_fails_under_ci(tmp_path, target, ids):
    local = _run(tmp_path, target, ids)
    assert local.returncode == 0, local.stdout[-2000:]
    assert "skipped" in local.stdout and "failed" not in local.stdout
    ci = _run(tmp_path, target, ids, CI="true")
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "torch" in ci.stdout and ("required under CI" in ci.stdout
                                     or "every CPU backend must run" in ci.stdout)


def test_gpu_ids_may_skip_under_ci_but_not_when_a_gpu_is_required(tmp_path):
    skipped = _run(tmp_path, BACKEND, "torch-cuda", CI="true")
    assert skipped.returncode == 0, skipped.stdout[-2000:]
    assert "skipped" in skipped.stdout and "no CUDA device for torch-cuda" in skipped.stdout
    required = _run(tmp_path, BACKEND, "torch-cuda", ANYML_REQUIRE_GPU="1")
    assert required.returncode == 1 and "ANYML_REQUIRE_GPU=1" in required.stdout


def test_unknown_ids_are_refused(tmp_path):
    out = _run(tmp_path, BACKEND, "numpy,nonesuch")
    assert out.returncode != 0 and "unknown ids ['nonesuch']" in out.stdout + out.stderr
