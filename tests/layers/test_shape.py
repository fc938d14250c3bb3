"""Flatten: shapes, gradients and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.layers import Flatten
from anyml.testing import assert_close, gradcheck


@pytest.mark.parametrize(("keep_dim", "in_shape", "out_shape"), [
    ("first", (2, 3, 4), (2, 12)),
    ("first", (5,), (5, 1)),
    ("last", (2, 3, 4), (6, 4)),
    (-1, (2, 3, 4), (1, 24)),
])
def test_forward_backward_match_numpy_reshape(backend, keep_dim, in_shape, out_shape):
    host = np.arange(np.prod(in_shape), dtype=np.float64).reshape(in_shape)
    layer = Flatten(keep_dim=keep_dim, backend=backend)
    Y = layer.forward(backend.asarray(host))
    assert_close(Y, host.reshape(out_shape), backend=backend)
    dY = np.random.default_rng(0).standard_normal(out_shape)
    assert_close(layer.backward(backend.asarray(dY)), dY.reshape(in_shape), backend=backend)


def test_gradcheck(backend64):
    layer = Flatten(backend=backend64)
    gradcheck(layer, [backend64.rng.normal((2, 2, 3))])


def test_summary_round_trip(backend):
    fresh = Flatten(backend=backend).set_params(Flatten(keep_dim="last", backend=backend).summary())
    assert fresh.keep_dim == "last"


def test_errors(backend):
    with pytest.raises(ValueError, match="Flatten: keep_dim must be 'first', 'last' or -1, got 'middle'"):
        Flatten(keep_dim="middle")
    with pytest.raises(ValueError, match="Flatten.set_params: keep_dim must be"):
        Flatten(backend=backend).set_params({"keep_dim": 0})
    layer = Flatten(backend=backend)
    layer.forward(backend.rng.normal((2, 3, 4)))
    with pytest.raises(ValueError, match=r"Flatten: expected dLdy of shape \(2, 12\)"):
        layer.backward(backend.rng.normal((2, 3, 4)))
    with pytest.raises(TypeError, match="Flatten: expected X to be a"):
        layer.forward("not an array")
