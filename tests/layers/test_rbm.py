"""RBM: CD-k statistics against a host NumPy reference from the same samples, training, the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.rbm import RBM
from anyml.testing import assert_close


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _toy_data(n_ex=60, n_in=16, flip=0.05, seed=0):
    """Three binary prototypes, each example one of them with a few bits flipped."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((3, n_in)) < 0.5).astype(float)
    X = protos[rng.integers(0, 3, n_ex)]
    return np.abs(X - (rng.random(X.shape) < flip))


def _host_params(layer):
    return [anyml.to_numpy(layer.parameters[k]).astype(np.float64) for k in ("W", "b_in", "b_out")]


@pytest.mark.parametrize("K", [1, 3])
def test_cd_statistics_match_host_reference_from_the_same_samples(backend, K):
    layer = RBM(4, K=K, backend=backend)
    V = _toy_data(n_ex=5, n_in=6, seed=1)
    layer.forward(backend.asarray(V))
    W, b_in, b_out = _host_params(layer)
    dv = layer.derived_variables
    samples = [anyml.to_numpy(h).astype(np.float64) for h in dv["H_samples"][0]]
    assert len(samples) == K
    for h in samples:
        assert h.shape == (5, 4) and set(np.unique(h)) <= {0.0, 1.0}
    # recompute the chain in float64 on the host from the recorded binary samples
    p_H = _sigmoid(V @ W + b_out)
    for h in samples:
        p_V = _sigmoid(h @ W.T + b_in)
        p_H_prime = _sigmoid(p_V @ W + b_out)
    assert_close(dv["p_H"][0], p_H, backend=backend)
    assert_close(dv["p_V_prime"][0], p_V, backend=backend)
    assert_close(dv["p_H_prime"][0], p_H_prime, backend=backend)
    layer.backward()
    assert_close(layer.gradients["W"], p_V.T @ p_H_prime - V.T @ p_H, backend=backend)
    assert_close(layer.gradients["b_in"], (p_V - V).sum(axis=0), backend=backend)
    assert_close(layer.gradients["b_out"], (p_H_prime - p_H).sum(axis=0), backend=backend)


def test_samples_follow_the_probabilities(backend64):
    # with W = 0 and b_out = logit(0.3) every hidden unit is on with probability 0.3
    layer = RBM(50, backend=backend64)
    layer.forward(backend64.asarray(np.zeros((400, 2))), retain_derived=False)
    layer.set_params({"parameters": {"W": np.zeros((2, 50)), "b_out": np.full(50, np.log(0.3 / 0.7))}})
    layer.forward(backend64.asarray(np.zeros((400, 2))))
    H = anyml.to_numpy(layer.derived_variables["H_samples"][0][0])
    n = H.size
    assert abs(H.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)


def test_training_on_toy_patterns_lowers_reconstruction_error(backend):
    X = _toy_data()
    Xb = backend.asarray(X)
    layer = RBM(6, K=1, optimizer="SGD(lr=0.05)", backend=backend)

    def error():
        recon = layer.reconstruct(Xb, n_steps=1, return_prob=True)
        return float(np.mean((anyml.to_numpy(recon) - X) ** 2))

    layer.forward(Xb, retain_derived=False)
    start = error()
    for _ in range(150):
        layer.CD_update(Xb)
        layer.update()
    assert error() < 0.5 * start


def test_update_descends_along_the_cd_gradient(backend64):
    layer = RBM(3, optimizer="SGD(lr=0.1)", backend=backend64)
    X = backend64.asarray(_toy_data(n_ex=8, n_in=5))
    layer.CD_update(X)
    before = {k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()}
    grads = {k: anyml.to_numpy(v).copy() for k, v in layer.gradients.items()}
    assert any(np.abs(g).max() > 0 for g in grads.values())
    layer.update()
    for key in ("W", "b_in", "b_out"):
        assert_close(layer.parameters[key], before[key] - 0.1 * grads[key], backend=backend64)


def test_same_seed_same_chain_and_parameters(make_backend_for, backend_id):
    runs = []
    for _ in range(2):
        be = make_backend_for("float64", seed=4)
        layer = RBM(3, K=2, backend=be)
        layer.forward(be.asarray(_toy_data(n_ex=6, n_in=5)))
        runs.append((_host_params(layer), [anyml.to_numpy(h) for h in
                                           layer.derived_variables["H_samples"][0]]))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
    reference = RBM(3, K=2, backend=anyml.make_backend("numpy", dtype="float64", seed=4))
    reference.forward(reference.backend.asarray(_toy_data(n_ex=6, n_in=5)))
    for a, b in zip(runs[0][0], _host_params(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_reconstruct(backend):
    layer = RBM(4, backend=backend)
    X = backend.asarray(_toy_data(n_ex=7, n_in=6))
    layer.CD_update(X)
    grads = anyml.to_numpy(layer.gradients["W"]).copy()
    prob = layer.reconstruct(X, n_steps=3, return_prob=True)
    sample = layer.reconstruct(X)
    assert tuple(prob.shape) == tuple(sample.shape) == (7, 6)
    assert_close(prob, np.clip(anyml.to_numpy(prob), 0, 1), backend=backend)
    assert set(np.unique(anyml.to_numpy(sample))) <= {0.0, 1.0}
    # reconstructing neither retains a pass nor touches the accumulated gradients
    assert layer.derived_variables == {}
    assert_close(layer.gradients["W"], grads, backend=backend, rtol=0, atol=0)
    with pytest.raises(ValueError, match="RBM: n_steps must be a positive integer"):
        layer.reconstruct(X, n_steps=0)


def test_free_energy(backend):
    layer = RBM(3, backend=backend)
    V = _toy_data(n_ex=4, n_in=5)
    F = layer.free_energy(backend.asarray(V))
    W, b_in, b_out = _host_params(layer)
    expected = -V @ b_in - np.log1p(np.exp(V @ W + b_out)).sum(axis=1)
    assert_close(F, expected, backend=backend)


def test_summary_round_trip(backend):
    layer = RBM(3, K=2, init="he_uniform", optimizer="Adam(lr=0.01)", backend=backend)
    X = backend.asarray(_toy_data(n_ex=4, n_in=5))
    layer.CD_update(X)
    layer.update()
    summary = layer.summary()
    assert set(summary["parameters"]) == {"W", "b_in", "b_out"}
    fresh = RBM(1, backend=backend).set_params(summary)
    assert (fresh.n_in, fresh.n_out, fresh.K) == (5, 3, 2)
    assert fresh.optimizer == layer.optimizer
    assert_close(fresh.forward(X, retain_derived=False), layer.forward(X, retain_derived=False),
                 backend=backend, rtol=0, atol=0)


def test_bad_input_errors(backend):
    layer = RBM(3, backend=backend)
    with pytest.raises(RuntimeError, match="RBM: backward called with no retained"):
        layer.backward()
    with pytest.raises(ValueError, match=r"RBM: expected V of shape \(n_ex, n_in\)"):
        layer.forward(backend.rng.normal((2, 3, 4)))
    layer.forward(backend.rng.uniform((2, 5)))
    with pytest.raises(ValueError, match=r"RBM: expected V of shape \(n_ex, 5\)"):
        layer.forward(backend.rng.uniform((2, 4)))
    with pytest.raises(ValueError, match="RBM: K must be a positive integer"):
        layer.forward(backend.rng.uniform((2, 5)), K=0)
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"RBM: expected V of dtype {backend.dtype_name}"):
        layer.forward(backend.xp.astype(backend.rng.uniform((2, 5)), getattr(backend.xp, other)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="RBM: expected V to be a"):
            layer.forward(np.ones((2, 5), dtype=backend.dtype_name))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_out": 0}, "RBM: n_out must be a positive integer"),
    ({"n_out": 2, "K": 1.5}, "RBM: K must be a positive integer"),
    ({"n_out": 2, "init": "glorot_unifrm"}, "unknown initializer"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RBM(**kwargs)
