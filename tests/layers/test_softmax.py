"""Softmax: against PyTorch autograd on any axis, finite differences, and stability."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.layers import Softmax
from anyml.testing import assert_close, gradcheck


@pytest.mark.parametrize(("shape", "dim"), [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((1, 6), 1),
                                            ((2, 3, 4), -3), ((2, 3, 4), 2), ((5,), -1), ((5,), 0)])
def test_matches_torch_autograd(backend, shape, dim):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    X = (3 * rng.standard_normal(shape)).astype(backend.dtype_name)
    dY = rng.standard_normal(shape).astype(backend.dtype_name)
    layer = Softmax(dim=dim, backend=backend)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Yt = torch.softmax(Xt, dim=dim)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_gradcheck(backend64, dim):
    layer = Softmax(dim=dim, backend=backend64)
    gradcheck(layer, [backend64.rng.normal((3, 4, 2))])


def test_large_inputs_do_not_overflow(backend):
    layer = Softmax(backend=backend)
    Y = layer.forward(backend.asarray([[1000.0, 1000.0, -1000.0], [-80.0, 80.0, 0.0]]))
    assert_close(Y, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], backend=backend)


def test_summary_round_trip(backend):
    fresh = Softmax(backend=backend).set_params(Softmax(dim=0, backend=backend).summary())
    assert fresh.dim == 0


def test_errors(backend):
    with pytest.raises(ValueError, match="Softmax: dim must be an integer"):
        Softmax(dim=1.5)
    layer = Softmax(dim=2, backend=backend)
    with pytest.raises(ValueError, match=r"Softmax: dim=2 is out of range for X of shape \(2, 3\)"):
        layer.forward(backend.rng.normal((2, 3)))
    with pytest.raises(RuntimeError, match="Softmax: backward called with no retained forward"):
        layer.backward(backend.rng.normal((2, 3)))


def test_numpy_ml_summary_loads(backend):
    summary = {"layer": "SoftmaxLayer", "parameters": {},
               "hyperparameters": {"layer": "SoftmaxLayer", "n_in": 10, "n_out": 10, "dim": 0}}
    assert Softmax(backend=backend).set_params(summary).dim == 0


@pytest.mark.parametrize("dim", ["a", 1.0, True])
def test_dim_must_be_an_integer(dim):
    with pytest.raises(ValueError, match="Softmax: dim must be an integer"):
        Softmax(dim=dim)
