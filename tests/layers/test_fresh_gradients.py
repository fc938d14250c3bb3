"""The first gradient after a flush: known zeros (``LayerBase._gradient_is_zero``) and, for the layers
that declare ``_fresh_gradients``, the backward's own array kept instead of added into zeros."""

from __future__ import annotations

import numpy as np

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.testing import assert_close


def _fc(backend, n_ex=3, n_in=5, n_out=4):
    layer = L.FullyConnected(n_out, backend=backend)
    X = backend.rng.normal((n_ex, n_in))
    dY = backend.rng.normal((n_ex, n_out))
    return layer, X, dY


def test_flushed_zeros_are_known_once(backend):
    layer, X, _ = _fc(backend)
    layer.forward(X)
    assert not layer._gradient_is_zero("W")  # made with the parameter, not by a flush
    layer.flush_gradients()
    assert layer._gradient_is_zero("W")
    assert not layer._gradient_is_zero("W")  # asked before a write: forgotten
    assert layer._gradient_is_zero("b")
    layer.flush_gradients()
    layer.gradients["W"] = layer.gradients["W"] + 1.0  # replaced: no longer the flushed zeros
    assert not layer._gradient_is_zero("W")


def test_only_declared_gradients_are_remembered(backend):
    layer = L.Conv2D(2, (3, 3), backend=backend)
    layer.forward(backend.rng.normal((1, 5, 5, 2)))
    layer.flush_gradients()
    assert not layer._gradient_is_zero("W")
    assert "_zero_gradients" not in vars(layer)


def test_fully_connected_keeps_its_first_gradient_and_adds_the_next(backend):
    layer, X, dY = _fc(backend)
    xp = backend.xp
    layer.forward(X)
    layer.flush_gradients()
    flushed = layer.gradients["W"]
    layer.forward(X)
    layer.backward(dY)
    first = layer.gradients["W"]
    assert first is not flushed
    assert_close(flushed, np.zeros(tuple(flushed.shape)), backend=backend)  # never written
    want = xp.matmul(xp.matrix_transpose(X), dY)
    assert_close(first, anyml.to_numpy(want), backend=backend)
    layer.forward(X)
    layer.backward(dY)
    assert_close(layer.gradients["W"], 2 * anyml.to_numpy(want), backend=backend)
    assert_close(layer.gradients["b"], 2 * anyml.to_numpy(xp.sum(dY, axis=0)), backend=backend)


def test_batch_of_one_weight_gradient_equals_the_product(backend):
    layer, X, dY = _fc(backend, n_ex=1)
    xp = backend.xp
    layer.forward(X)
    dX = layer.backward(dY)
    assert tuple(layer.gradients["W"].shape) == (5, 4)
    np.testing.assert_array_equal(anyml.to_numpy(layer.gradients["W"]),
                                  anyml.to_numpy(xp.matmul(xp.matrix_transpose(X), dY)))
    assert tuple(dX.shape) == (1, 5)

