"""RBM.backward(dLdy), the call Sequential makes: the gradient through P_H = sigmoid(VW + b_out),
checked by finite differences; without dLdy it is the CD-K update, as before."""

from __future__ import annotations

import numpy as np

import anyml
from anyml.layers import RBM, FullyConnected, Softmax
from anyml.model import Sequential
from anyml.testing import numerical_gradient


def test_backward_with_a_gradient_matches_finite_differences(backend64):
    be = backend64
    rng = np.random.default_rng(0)
    rbm = RBM(3, backend=be)
    V = rng.uniform(size=(4, 5))
    rbm.forward(be.asarray(V), retain_derived=False)
    dY = rng.standard_normal((4, 3))
    W = anyml.to_numpy(rbm.parameters["W"]).copy()
    b = anyml.to_numpy(rbm.parameters["b_out"]).copy()

    def loss_V(v):
        return float(np.sum(dY / (1.0 + np.exp(-(v @ W + b)))))

    def loss_W(w):
        return float(np.sum(dY / (1.0 + np.exp(-(V @ w + b)))))

    def loss_b(bb):
        return float(np.sum(dY / (1.0 + np.exp(-(V @ W + bb)))))

    rbm.forward(be.asarray(V))
    dV = rbm.backward(be.asarray(dY))
    np.testing.assert_allclose(anyml.to_numpy(dV), numerical_gradient(loss_V, V), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(anyml.to_numpy(rbm.gradients["W"]), numerical_gradient(loss_W, W),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(anyml.to_numpy(rbm.gradients["b_out"]),
                               numerical_gradient(loss_b, b), rtol=1e-6, atol=1e-8)
    assert not np.any(anyml.to_numpy(rbm.gradients["b_in"]))


def test_rbm_inside_sequential_trains(backend):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(12, 6)), rng.integers(0, 2, 12)
    model = Sequential([RBM(4, backend=backend), FullyConnected(2, backend=backend),
                        Softmax(backend=backend)], loss="CrossEntropy")
    history = model.fit(X, y, epochs=2, batch_size=6, verbose=False)
    assert np.isfinite(history["loss"]).all()


def test_backward_without_gradient_is_cd(backend):
    rbm = RBM(3, backend=backend)
    rbm.forward(backend.asarray(np.random.default_rng(0).uniform(size=(4, 5))))
    assert rbm.backward() is None
    assert rbm.backward is not None and np.any(anyml.to_numpy(rbm.gradients["W"]))
