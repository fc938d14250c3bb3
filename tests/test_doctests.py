"""The examples in the docstrings run, as doctests, in the test suite (and so in CI)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import anyml

MODULES = sorted(m.name for m in pkgutil.walk_packages(anyml.__path__, "anyml."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module for an optional dependency (CuPy, MPI) that is missing
        pytest.skip(f"{name} needs an optional dependency: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see stdout)"


def test_some_modules_have_examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    with_examples = [n for n in ("anyml.model", "anyml.metrics", "anyml.callbacks", "anyml.losses")
                     if any(t.examples for t in finder.find(importlib.import_module(n), n))]
    assert len(with_examples) == 4
