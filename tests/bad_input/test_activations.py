"""NaN and infinity through every activation: NaN propagates (as in PyTorch), never becomes 0."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.activations import ACTIVATIONS, get_activation
from tests.bad_input._helpers import refused


@pytest.mark.parametrize("name", ACTIVATIONS.names)
def test_nan_propagates(backend, name):
    act = get_activation(name)
    z = backend.asarray(np.array([np.nan, -1.0, 0.0, 2.0]))
    with np.errstate(invalid="ignore"):  # NumPy may warn about the NaN it propagates
        out = anyml.to_numpy(act(z))
    assert np.isnan(out[0]), f"{name}({np.nan}) = {out[0]}"
    assert np.isfinite(out[1:]).all()


@pytest.mark.parametrize("name", ACTIVATIONS.names)
def test_nan_in_the_upstream_gradient_propagates(backend, name):
    act = get_activation(name)
    z = backend.asarray(np.array([-1.0, 0.5, 2.0]))
    dy = backend.asarray(np.array([np.nan, np.nan, np.nan]))
    out = anyml.to_numpy(act.backward(z, dy))
    nonzero = anyml.to_numpy(act.grad(z)) != 0
    assert np.isnan(out[nonzero]).all()


@pytest.mark.parametrize(("name", "key"), [("LeakyReLU", "alpha"), ("ELU", "alpha"),
                                           ("Affine", "slope")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "x", None])
def test_settings(name, key, value):
    refused(name, get_activation, {"id": name, key: value})
