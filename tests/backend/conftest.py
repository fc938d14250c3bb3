"""Fixtures of the backend tests."""

from __future__ import annotations

import pytest

import anyml


@pytest.fixture(params=["float32", "float64"])
def nb(request: pytest.FixtureRequest) -> anyml.Backend:
    """A numpy backend in each float dtype, for the tests of its native fast paths."""
    return anyml.make_backend("numpy", dtype=request.param, seed=0)
