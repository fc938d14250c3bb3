"""Test fixtures: every test that takes ``backend`` runs on each backend available here.

``ANYML_TEST_BACKENDS`` (comma-separated ids, e.g. ``numpy,torch``) restricts the set; the nox sessions
use it. ``ANYML_REQUIRE_GPU=1`` turns a missing CUDA device into a failure instead of a skip.
"""

from __future__ import annotations

import os

import pytest

import anyml
from anyml.backend import BackendUnavailableError, make_backend

# id -> (backend name, device)
BACKEND_SPECS = {
    "numpy": ("numpy", None),
    "strict": ("array-api-strict", None),
    "strict-device1": ("array-api-strict", "device1"),
    "torch": ("torch", "cpu"),
    "cupy": ("cupy", None),
}
_selected = os.environ.get("ANYML_TEST_BACKENDS", "")
BACKEND_IDS = [b.strip() for b in _selected.split(",") if b.strip()] or list(BACKEND_SPECS)
REQUIRE_GPU = os.environ.get("ANYML_REQUIRE_GPU", "") == "1"


def _make(backend_id: str, dtype: str, seed: int = 0) -> anyml.Backend:
    name, device = BACKEND_SPECS[backend_id]
    try:
        return make_backend(name, device=device, dtype=dtype, seed=seed)
    except BackendUnavailableError as exc:
        if REQUIRE_GPU and name == "cupy":
            pytest.fail(f"ANYML_REQUIRE_GPU=1 but the cupy backend is unusable: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(params=BACKEND_IDS)
def backend_id(request: pytest.FixtureRequest) -> str:
    """The id of one backend of the matrix (``numpy``, ``strict``, ``strict-device1``, ``torch``,
    ``cupy``)."""
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(backend_id: str, dtype: str) -> anyml.Backend:
    """A fresh backend of the matrix, seeded with 0, in float32 and float64."""
    return _make(backend_id, dtype)


@pytest.fixture
def backend64(backend_id: str) -> anyml.Backend:
    """A fresh float64 backend of the matrix, seeded with 0 (for gradient checks)."""
    return _make(backend_id, "float64")


@pytest.fixture
def make_backend_for(backend_id: str):
    """A factory ``(dtype="float64", seed=0) -> Backend`` for the current matrix entry."""

    def factory(dtype: str = "float64", seed: int = 0) -> anyml.Backend:
        return _make(backend_id, dtype, seed)

    return factory


@pytest.fixture(autouse=True)
def _restore_global_backend():
    """Tests that call ``set_backend`` must not leak it into the next test."""
    saved = anyml.backend._selector._current
    yield
    anyml.backend._selector._current = saved


# --------------------------------------------------------------------------- per-backend summary
_counts: dict[tuple[str, str], int] = {}
_skip_reasons: dict[str, set[str]] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    backend_id = callspec.params.get("backend_id") if callspec is not None else None
    item.user_properties.append(("anyml_backend", backend_id or "backend-independent"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    backend_id = dict(report.user_properties).get("anyml_backend", "backend-independent")
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = report.outcome
        _counts[(backend_id, outcome)] = _counts.get((backend_id, outcome), 0) + 1
        if report.skipped and isinstance(report.longrepr, tuple):
            _skip_reasons.setdefault(backend_id, set()).add(str(report.longrepr[2]))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _counts:
        return
    terminalreporter.section("anyml: tests per backend")
    for backend_id in sorted({b for b, _ in _counts}):
        parts = [f"{_counts[(backend_id, o)]} {o}" for o in ("passed", "failed", "skipped")
                 if (backend_id, o) in _counts]
        reasons = sorted(_skip_reasons.get(backend_id, ()))
        why = f"  (skipped: {reasons[0]})" if len(reasons) == 1 else ""
        terminalreporter.write_line(f"{backend_id:>20}: {', '.join(parts)}{why}")
