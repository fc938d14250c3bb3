"""The distribution name and every install hint the project prints name an extra that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anyml._dist import DIST_NAME, install_hint

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "anyml").rglob("*.py")),
             *sorted((ROOT / "examples").glob("*.py"))]
    docs = ROOT / "docs"
    if docs.is_dir():
        files += sorted(docs.rglob("*.rst")) + sorted(docs.rglob("*.md"))
    return files


def test_distribution_name_matches_pyproject():
    assert PYPROJECT["project"]["name"] == DIST_NAME
    assert DIST_NAME != "anyml"  # the name "anyml" on the index is an unrelated project


def test_install_hint_names_the_distribution_and_a_real_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in extras:
        hint = install_hint(extra)
        assert f"'{DIST_NAME}[{extra}]'" in hint
        assert f"-e '.[{extra}]'" in hint


def test_every_printed_hint_installs_this_project():
    """No ``pip install 'anyml[...]'`` (the unrelated project) anywhere; every extra named exists."""
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    pattern = re.compile(r"pip install (?:-e )?['\"]?([A-Za-z0-9_.-]*)\[([a-z0-9,-]+)\]")
    seen = 0
    for path in _sources():
        for name, names in pattern.findall(path.read_text(encoding="utf-8")):
            seen += 1
            assert name in (DIST_NAME, "."), f"{path.name}: 'pip install {name}[{names}]'"
            for extra in names.split(","):
                assert extra in extras, f"{path.name}: extra {extra!r} is not in pyproject.toml"
    assert seen >= 3
