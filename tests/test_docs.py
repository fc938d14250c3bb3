"""The documentation: its backend table is true, the site builds with warnings as errors, and the
README's training snippet runs with only the Quick-start 1 extras."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

import anyml.layers
from tests.conftest import BACKEND_SPECS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _table_rows() -> tuple[list[str], list[list[str]]]:
    text = (DOCS / "backends.rst").read_text()
    block = text.split(".. csv-table::", 1)[1]
    header = next(line for line in block.splitlines() if ":header:" in line).split(":header:")[1]
    rows = [line.strip() for line in block.splitlines()[1:]
            if line.startswith("   ") and not line.strip().startswith(":")]
    rows = [r for r in rows if r]
    head = next(csv.reader([header.strip()], skipinitialspace=True))
    body = [next(csv.reader([r], skipinitialspace=True)) for r in rows]
    return head, body


def test_backend_table_is_true():
    head, body = _table_rows()
    assert head == ["layer", "numpy", "array-api-strict", "torch (CPU)", "cupy"]
    tested_names = {spec[0] for spec in BACKEND_SPECS.values()}
    assert {"numpy", "array-api-strict", "torch", "cupy"} <= tested_names  # the suite's backends
    assert ("array-api-strict", "device1") in BACKEND_SPECS.values()  # "tested (2 devices)"
    layers = {row[0] for row in body if " " not in row[0]}  # the other rows: Dropout, the model
    expected = set(anyml.layers.__all__) - {"LayerBase"}
    assert layers == expected, f"missing {expected - layers}, unknown {layers - expected}"
    tests = {p.name: p.read_text() for p in (ROOT / "tests" / "layers").glob("test_*.py")}
    for row in body:
        assert len(row) == 5, row
        if row[0] not in expected:
            continue
        assert row[1] == row[3] == "tested" and row[2] == "tested (2 devices)", row
        # a layer marked tested has tests that build it and take the per-backend fixtures
        assert any(re.search(rf"\b{row[0]}\(", src) and re.search(r"\(backend(64)?\b", src)
                   for src in tests.values()), f"no per-backend test builds {row[0]}"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra (pip install -e '.[docs]')")
    pytest.importorskip("numpydoc", reason="the docs extra (pip install -e '.[docs]')")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(tmp_path / "html")], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").is_file()


def _readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_training_snippet_runs_without_torch(tmp_path):
    """After Quick-start 1 alone (the examples extra: no PyTorch, no array-api-strict)."""
    pytest.importorskip("sklearn")
    code = _readme_block("Training a model")
    check = "\nimport sys\nassert 'torch' not in sys.modules and 'array_api_strict' not in sys.modules\n"
    script = tmp_path / "snippet.py"
    script.write_text(code + check)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "model.safetensors").is_file()
    assert "'accuracy'" in proc.stdout and "parameters:" in proc.stdout
