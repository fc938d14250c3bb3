"""Test fixtures: every test that takes ``backend`` runs on each backend of the matrix.

The matrix: ``numpy``, ``strict`` and ``strict-device1`` (array-api-strict on its default and on a
second device), ``torch`` (CPU), ``gpulike`` (the CuPy backend on an emulated CUDA device, see
:mod:`anyml.backend._emulated`), and the two real GPU ids ``cupy`` and ``torch-cuda``.
``ANYML_TEST_BACKENDS`` (comma-separated ids, e.g. ``numpy,torch``) restricts it; the nox sessions
use it.

A backend that cannot run here is skipped with the reason, except:

- under CI (``CI=true``) or with ``ANYML_REQUIRE_BACKENDS=1``, a missing CPU backend (torch,
  array-api-strict, the emulated device) or a missing PyTorch for the autograd oracle (any
  ``pytest.importorskip("torch")``) fails the test: an image without them must not pass with those
  checks gone. Only ``cupy`` and ``torch-cuda`` may still skip, on a machine without a CUDA device;
- with ``ANYML_REQUIRE_GPU=1`` (``nox -s gpu``, ``.ci/gpu``), ``cupy`` and ``torch-cuda`` fail too.
"""

from __future__ import annotations

import os

import pytest

import anyml
from anyml.backend import BackendUnavailableError, _standin, make_backend, use_fast_paths

# id -> (backend name, device)
BACKEND_SPECS = {
    "numpy": ("numpy", None),
    "strict": ("array-api-strict", None),
    "strict-device1": ("array-api-strict", "device1"),
    "torch": ("torch", "cpu"),
    "gpulike": ("gpulike", None),
    "cupy": ("cupy", None),
    "torch-cuda": ("torch", "cuda"),
}
#: The ids that need a real CUDA device; the only ones that may skip under CI.
GPU_IDS = ("cupy", "torch-cuda")
_selected = os.environ.get("ANYML_TEST_BACKENDS", "")
BACKEND_IDS = [b.strip() for b in _selected.split(",") if b.strip()] or list(BACKEND_SPECS)
_unknown = sorted(set(BACKEND_IDS) - set(BACKEND_SPECS))
if _unknown:
    raise pytest.UsageError(f"ANYML_TEST_BACKENDS: unknown ids {_unknown}; known: {list(BACKEND_SPECS)}")
REQUIRE_GPU = os.environ.get("ANYML_REQUIRE_GPU", "") == "1"
REQUIRE_BACKENDS = (os.environ.get("CI", "").lower() in ("true", "1")
                    or os.environ.get("ANYML_REQUIRE_BACKENDS", "") not in ("", "0"))
#: Modules whose absence fails a test under CI instead of skipping it (the autograd oracle and the
#: CPU backends).
REQUIRED_MODULES = ("torch", "array_api_strict")


def _make(backend_id: str, dtype: str, seed: int = 0) -> anyml.Backend:
    name, device = BACKEND_SPECS[backend_id]
    try:
        backend = make_backend(name, device=device, dtype=dtype, seed=seed)
    except BackendUnavailableError as exc:
        if backend_id in GPU_IDS:
            if REQUIRE_GPU:
                pytest.fail(f"ANYML_REQUIRE_GPU=1 but the {backend_id} backend is unusable: {exc}")
            pytest.skip(f"no CUDA device for {backend_id}: {exc}")
        if REQUIRE_BACKENDS:
            pytest.fail(f"under CI every CPU backend must run, but {backend_id} cannot: {exc}")
        pytest.skip(str(exc))
    if name == "gpulike":
        # test code computes on the backend's device as if inside backend.activate(); anyml's own
        # code still has to enter the device itself (see anyml.backend._standin)
        _standin.set_ambient_device(backend.device.id)
    return backend


def _required_module_skip(longrepr: object) -> str | None:
    """The name of a required module whose import failure made this skip, if any."""
    text = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    for module in REQUIRED_MODULES:
        if f"could not import '{module}'" in text:
            return module
    return None


def _fail_required_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skip caused by a missing required module into a failure."""
    if REQUIRE_BACKENDS and report.skipped:
        module = _required_module_skip(report.longrepr)
        if module is not None:
            report.outcome = "failed"
            report.longrepr = (f"{module} is required under CI (CI=true or ANYML_REQUIRE_BACKENDS) "
                               f"but cannot be imported: {report.longrepr}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_required_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _fail_required_skip(outcome.get_result())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``ANYML_ONLY_BACKEND_TESTS=1`` (the GPU job) deselects the tests that run on no backend id."""
    if os.environ.get("ANYML_ONLY_BACKEND_TESTS", "") != "1":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        (keep if callspec is not None and "backend_id" in callspec.params else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=BACKEND_IDS)
def backend_id(request: pytest.FixtureRequest) -> str:
    """The id of one backend of the matrix (see :data:`BACKEND_SPECS`)."""
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
    _standin.set_ambient_device(None)


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


@pytest.fixture
def pure_paths():
    """Native fast paths off for the test: for tests of the pure path's own workings (its chunks,
    its cache fields), which a backend's native kernel does not have."""
    with use_fast_paths(False):
        yield
