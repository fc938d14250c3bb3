"""Flatten, Reshape and Identity: shapes, gradients and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers import Flatten, FullyConnected, Identity, Permute, Reshape, Softmax
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


@pytest.mark.parametrize(("target", "in_shape", "out_shape"), [
    ((8, 8, 1), (3, 64), (3, 8, 8, 1)),
    ((-1,), (2, 3, 4), (2, 12)),
    ((4, -1), (2, 3, 4), (2, 4, 3)),
    (6, (2, 3, 2), (2, 6)),
])
def test_reshape_matches_numpy(backend, target, in_shape, out_shape):
    host = np.arange(np.prod(in_shape), dtype=np.float64).reshape(in_shape)
    layer = Reshape(target, backend=backend)
    assert_close(layer.forward(backend.asarray(host)), host.reshape(out_shape), backend=backend)
    dY = np.random.default_rng(0).standard_normal(out_shape)
    assert_close(layer.backward(backend.asarray(dY)), dY.reshape(in_shape), backend=backend)


def test_reshape_and_identity_gradcheck(backend64):
    gradcheck(Reshape((3, 2), backend=backend64), [backend64.rng.normal((2, 2, 3))])
    gradcheck(Identity(backend=backend64), [backend64.rng.normal((2, 3))])


def test_reshape_summary_checkpoint_and_errors(backend, tmp_path):
    fresh = Reshape((1,), backend=backend).set_params(Reshape((2, -1), backend=backend).summary())
    assert fresh.target_shape == (2, -1)
    assert repr(fresh) == "Reshape(target_shape=(2, -1))"
    model = anyml.Sequential([Reshape((2, 3), backend=backend), Flatten(backend=backend),
                              FullyConnected(2, backend=backend), Softmax(backend=backend)], loss="ce")
    X = np.random.default_rng(0).standard_normal((4, 6))
    model.fit(X, np.array([0, 1, 0, 1]), epochs=1, verbose=False)
    anyml.save(model, tmp_path / "m.npz")
    loaded = anyml.load(tmp_path / "m.npz", backend=backend)
    assert loaded.layers[0].target_shape == (2, 3)
    assert_close(loaded.predict(X), anyml.to_numpy(model.predict(X)), backend=backend)
    for bad in [(), (0, 2), (-1, -1), "3", (2.0,)]:
        with pytest.raises(ValueError, match="Reshape: target_shape must be"):
            Reshape(bad)
    with pytest.raises(ValueError, match=r"Reshape: cannot reshape examples of shape \(5,\)"):
        Reshape((2, 3), backend=backend).forward(backend.rng.normal((2, 5)))
    with pytest.raises(ValueError, match=r"Reshape: cannot reshape"):
        Reshape((2, -1), backend=backend).forward(backend.rng.normal((2, 5)))


@pytest.mark.parametrize(("dims", "in_shape"),
                         [((2, 1), (2, 3, 4)), ((3, 1, 2), (2, 3, 4, 5)), ((1,), (3, 2))])
def test_permute_matches_numpy(backend, dims, in_shape):
    host = np.random.default_rng(0).standard_normal(in_shape)
    layer = Permute(dims, backend=backend)
    Y = layer.forward(backend.asarray(host))
    expected = np.transpose(host, (0, *dims))
    assert_close(Y, expected, backend=backend)
    dY = np.random.default_rng(1).standard_normal(expected.shape)
    inverse = np.argsort((0, *dims))
    assert_close(layer.backward(backend.asarray(dY)), np.transpose(dY, inverse), backend=backend)


def test_permute_gradcheck_summary_and_errors(backend64):
    gradcheck(Permute((3, 1, 2), backend=backend64), [backend64.rng.normal((2, 3, 2, 4))])
    fresh = Permute((1,), backend=backend64).set_params(Permute((2, 1), backend=backend64).summary())
    assert fresh.dims == (2, 1)
    for bad in [(0, 1), (1, 1), (2, 3), "21", (1.0,)]:
        with pytest.raises(ValueError, match="Permute: dims must be a permutation"):
            Permute(bad)
    with pytest.raises(ValueError, match=r"Permute: dims=\(2, 1\) needs inputs with 3 axes"):
        Permute((2, 1), backend=backend64).forward(backend64.rng.normal((2, 3)))
