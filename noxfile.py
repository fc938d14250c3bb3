"""Test matrix: one ``tests`` session per backend in ``backends/``, plus ``lint``, ``docs`` and ``gpu``.

``nox`` alone runs the sessions that work on a CPU-only machine; ``nox -s gpu`` runs the CuPy and
torch-CUDA tests and fails when no CUDA device is visible.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BACKENDS = sorted(p.stem for p in (ROOT / "backends").glob("*.txt"))
CPU_BACKENDS = [b for b in BACKENDS if b != "cupy"]
# The ids of tests/conftest.py for each backend file.
TEST_IDS = {"numpy": "numpy,gpulike", "array-api-strict": "strict,strict-device1", "torch": "torch",
            "cupy": "cupy,torch-cuda"}

nox.options.sessions = [f"tests({b})" for b in CPU_BACKENDS] + ["lint"]


def _install(session: nox.Session, backend: str) -> None:
    session.install("-e", ".[test]", "-r", f"backends/{backend}.txt")
    if backend != "torch":  # PyTorch is the autograd reference of every backend's tests
        session.install("-r", "backends/torch.txt")


@nox.session
@nox.parametrize("backend", CPU_BACKENDS, ids=CPU_BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one backend."""
    _install(session, backend)
    session.run("python", "-m", "pytest", *session.posargs,
                env={"ANYML_TEST_BACKENDS": TEST_IDS[backend]})


@nox.session
def gpu(session: nox.Session) -> None:
    """Run the CuPy and torch-CUDA tests; fails (does not skip) when no CUDA device is usable.

    ``nox -s gpu --no-venv`` uses the packages already installed (for a machine without a registry).
    """
    if shutil.which("nvidia-smi") is None:
        session.error("no CUDA device is visible (nvidia-smi not found): the gpu session needs one")
    if not isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        _install(session, "cupy")
    session.run("python", "-m", "pytest", *session.posargs,
                env={"ANYML_TEST_BACKENDS": TEST_IDS["cupy"], "ANYML_REQUIRE_GPU": "1",
                     "ANYML_ONLY_BACKEND_TESTS": "1"})


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (docs/_build/html) with warnings as errors, then its doctests."""
    session.install("-e", ".[docs,test]")
    session.run("python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("python", "-m", "pytest", "-q", "tests/test_doctests.py", "tests/test_docs.py",
                "-k", "not build")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "anyml", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("mypy")
