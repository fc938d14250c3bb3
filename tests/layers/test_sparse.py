"""SparseEvolution: masked gradients, exact-count rewiring on the device, and the layer API."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import anyml
from anyml.layers.dense import FullyConnected
from anyml.layers.sparse import SparseEvolution, _floor_fraction, _ranks
from anyml.testing import assert_close, gradcheck


def _host(layer, key):
    return anyml.to_numpy(layer.parameters[key]).astype(np.float64)


def _built(backend, n_in=10, n_out=8, epsilon=2, **kwargs):
    layer = SparseEvolution(n_out, epsilon=epsilon, backend=backend, **kwargs)
    layer.forward(backend.asarray(np.zeros((1, n_in))), retain_derived=False)
    return layer


@pytest.mark.parametrize("act", ["Identity", "Tanh"])
def test_matches_torch_autograd(backend, act):
    torch = pytest.importorskip("torch")
    layer = _built(backend, act_fn=act)
    layer.set_params({"parameters": {"b": np.random.default_rng(2).standard_normal(8)}})
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 10)).astype(backend.dtype_name)
    dY = rng.standard_normal((4, 8)).astype(backend.dtype_name)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))

    M = torch.tensor(_host(layer, "W_mask"), dtype=torch.float64)
    W = torch.tensor(_host(layer, "W"), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(_host(layer, "b"), dtype=torch.float64, requires_grad=True)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Z = Xt @ (W * M) + b
    Yt = torch.tanh(Z) if act == "Tanh" else Z
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(layer.gradients["W"], W.grad.numpy(), backend=backend)
    assert_close(layer.gradients["b"], b.grad.numpy(), backend=backend)
    assert set(layer.gradients) == {"W", "b"}


def test_gradients_match_a_dense_layer_with_masked_weights(backend):
    layer = _built(backend, act_fn="ReLU")
    dense = FullyConnected(8, act_fn="ReLU", backend=backend)
    mask = _host(layer, "W_mask")
    dense.set_params({"parameters": {"W": _host(layer, "W") * mask, "b": _host(layer, "b")}})
    X, dY = backend.rng.normal((5, 10)), backend.rng.normal((5, 8))
    assert_close(layer.forward(X), dense.forward(X), backend=backend)
    assert_close(layer.backward(dY), dense.backward(dY), backend=backend)
    assert_close(layer.gradients["W"], anyml.to_numpy(dense.gradients["W"]) * mask, backend=backend)
    assert_close(layer.gradients["b"], dense.gradients["b"], backend=backend)


def test_gradcheck_with_mask(backend64):
    layer = _built(backend64, n_in=6, n_out=5, epsilon=1, act_fn="Tanh")
    assert 0 < layer.n_active < 30
    gradcheck(layer, [backend64.rng.normal((3, 6))])


@pytest.mark.parametrize(("n_in", "n_out", "epsilon", "n_active"), [
    (10, 8, 2, 36),     # density 2 * 18 / 80 = 0.45
    (20, 30, 2, 100),   # 2 * 50 / 600
    (4, 3, 20, 12),     # capped at 1: every connection
    (50, 40, 0.01, 1),  # at least one
])
def test_initial_mask_has_the_exact_density(backend, n_in, n_out, epsilon, n_active):
    layer = _built(backend, n_in=n_in, n_out=n_out, epsilon=epsilon)
    mask, W = _host(layer, "W_mask"), _host(layer, "W")
    assert layer.n_active == n_active
    assert mask.sum() == n_active and set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(W[mask == 0] == 0)


def _expected_survivors(W, mask, zeta):
    """The active positions that rewiring keeps, computed on the host."""
    flat_w, flat_m = W.ravel(), mask.ravel()
    keep = flat_m > 0
    for subset, magnitude in ((keep & (flat_w >= 0), flat_w), (keep & (flat_w < 0), -flat_w)):
        idx = np.flatnonzero(subset)
        k = idx.size * Fraction(str(zeta)).numerator // Fraction(str(zeta)).denominator
        drop = idx[np.argsort(magnitude[idx], kind="stable")[:k]]
        keep = keep.copy()
        keep[drop] = False
    return keep.reshape(W.shape)


def test_rewiring_keeps_the_exact_count_and_drops_the_weakest(backend):
    layer = _built(backend, n_in=12, n_out=9, epsilon=2, zeta=0.3, optimizer="SGD(lr=0.1)")
    n_active = layer.n_active
    for step in range(4):
        W_before, mask_before = _host(layer, "W"), _host(layer, "W_mask")
        layer.forward(backend.rng.normal((6, 12)))
        layer.backward(backend.rng.normal((6, 9)))
        grad = anyml.to_numpy(layer.gradients["W"]).astype(np.float64)
        layer.update()
        W_updated = (W_before - 0.1 * grad) * mask_before
        survivors = _expected_survivors(W_updated, mask_before, 0.3)
        W, mask = _host(layer, "W"), _host(layer, "W_mask")
        assert mask.sum() == n_active, f"step {step}"
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert np.all(mask[survivors] == 1)
        grown = (mask == 1) & ~survivors
        assert grown.sum() == n_active - survivors.sum() > 0
        assert np.all(mask_before[grown] == 0)  # new connections are grown where there were none
        tol = 1e-6 if backend.dtype_name == "float32" else 1e-12
        np.testing.assert_allclose(W[survivors], W_updated[survivors], rtol=tol, atol=tol)
        limit = 0.1 * np.sqrt(6 / 21)
        assert np.all(np.abs(W[grown]) <= limit) and np.all(W[mask == 0] == 0)


def test_rewiring_a_dense_layer_regrows_in_place(backend):
    layer = _built(backend, n_in=3, n_out=4, epsilon=50)
    assert layer.n_active == 12
    layer.evolve_connections()
    assert _host(layer, "W_mask").sum() == 12


def test_rewiring_stays_on_the_device(backend, monkeypatch):
    layer = _built(backend)
    W_before = _host(layer, "W")

    def refuse(*args, **kwargs):
        raise AssertionError("rewiring moved data between host and device")

    monkeypatch.setattr(backend, "to_host", refuse)
    monkeypatch.setattr(anyml.backend, "to_numpy", refuse)
    if backend.name in ("torch", "cupy"):  # their generators draw on the device itself
        monkeypatch.setattr(backend, "from_host", refuse)
    layer.evolve_connections()
    monkeypatch.undo()
    assert backend.owns(layer.parameters["W"]) and backend.owns(layer.parameters["W_mask"])
    assert layer.parameters["W_mask"].dtype == backend.dtype
    assert not np.array_equal(_host(layer, "W"), W_before)


def test_no_rewiring_when_frozen_or_zeta_is_zero(backend64):
    for layer in (_built(backend64), _built(backend64, zeta=0.0)):
        mask = _host(layer, "W_mask")
        if layer.zeta > 0:
            layer.freeze()
        layer.forward(backend64.rng.normal((2, 10)))
        layer.backward(backend64.rng.normal((2, 8)))
        layer.update()
        np.testing.assert_array_equal(_host(layer, "W_mask"), mask)


def test_same_seed_same_parameters_on_every_backend(backend):
    reference = _built(anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0))
    layer = _built(backend)
    for key in ("W", "b", "W_mask"):
        assert_close(layer.parameters[key], reference.parameters[key], backend=backend, rtol=0,
                     atol=0)


def test_summary_round_trip(backend):
    layer = _built(backend, act_fn="Tanh", zeta=0.2, optimizer="Adam(lr=0.01)")
    layer.forward(backend.rng.normal((3, 10)))
    layer.backward(backend.rng.normal((3, 8)))
    layer.update()  # rewires
    summary = layer.summary()
    assert set(summary["parameters"]) == {"W", "b", "W_mask"}
    fresh = SparseEvolution(1, backend=backend).set_params(summary)
    assert (fresh.n_in, fresh.n_out, fresh.zeta, fresh.epsilon) == (10, 8, 0.2, 2)
    assert str(fresh.act_fn) == "Tanh" and fresh.optimizer == layer.optimizer
    assert "W_mask" not in fresh.gradients
    X = backend.rng.normal((3, 10))
    assert_close(fresh.forward(X), layer.forward(X), backend=backend, rtol=0, atol=0)


def test_bad_input_errors(backend):
    layer = SparseEvolution(3, backend=backend)
    with pytest.raises(RuntimeError, match="SparseEvolution: evolve_connections needs"):
        layer.evolve_connections()
    with pytest.raises(RuntimeError, match="SparseEvolution: the density is known after"):
        _ = layer.density
    with pytest.raises(ValueError, match=r"SparseEvolution: expected X of shape \(n_ex, n_in\)"):
        layer.forward(backend.rng.normal((2, 3, 4)))
    layer.forward(backend.rng.normal((2, 5)))
    with pytest.raises(ValueError, match=r"SparseEvolution: expected X of shape \(n_ex, 5\)"):
        layer.forward(backend.rng.normal((2, 4)))
    with pytest.raises(ValueError, match=r"SparseEvolution: expected dLdy of shape \(2, 3\)"):
        layer.backward(backend.rng.normal((2, 4)))
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"SparseEvolution: expected X of dtype {backend.dtype_name}"):
        layer.forward(backend.xp.astype(backend.rng.normal((2, 5)), getattr(backend.xp, other)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="SparseEvolution: expected X to be a"):
            layer.forward(np.ones((2, 5), dtype=backend.dtype_name))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_out": 0}, "SparseEvolution: n_out must be a positive integer"),
    ({"n_out": 2, "zeta": 1.5}, "SparseEvolution: zeta must be a number in"),
    ({"n_out": 2, "epsilon": 0}, "SparseEvolution: epsilon must be a positive number"),
    ({"n_out": 2, "act_fn": "relux"}, "unknown activation 'relux'"),
    ({"n_out": 2, "init": "glorot_unifrm"}, "unknown initializer"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseEvolution(**kwargs)


# ---------------------------------------------------------------------------- exact integer counts
def test_ranks_are_int64(backend):
    xp = backend.xp
    keys = backend.from_host(np.array([0.5, -1.0, 0.5, 2.0, np.inf, -3.0]))
    ranks = _ranks(keys, xp)
    assert ranks.dtype == xp.int64  # a float32 rank is exact only up to 2**24
    np.testing.assert_array_equal(backend.to_host(ranks), [2, 1, 3, 4, 5, 0])


BIG = [0, 1, 9, 10, 90, 2**24 - 1, 2**24 + 1, 2**24 + 3, 3 * 2**40 + 7, 2**62 + 5]


@pytest.mark.parametrize(("zeta", "exact"), [
    (0.3, Fraction(3, 10)), (0.7, Fraction(7, 10)), (1.0, Fraction(1)), (0.0, Fraction(0)),
    (1 / 3, Fraction(1, 3)), (0.123457, Fraction(123457, 1_000_000)),
])
def test_floor_fraction_is_exact_in_int64(backend, zeta, exact):
    xp = backend.xp
    n = xp.asarray(BIG, dtype=xp.int64, device=backend.device)
    k = _floor_fraction(n, zeta)
    assert k.dtype == xp.int64
    assert backend.to_host(k).tolist() == [int(v * exact.numerator // exact.denominator)
                                           for v in BIG]


def test_rewiring_drops_exactly_the_fraction_of_a_count(backend):
    # 90 positive weights and zeta = 0.7: 63 are dropped (float64 arithmetic says 0.7 * 90 < 63)
    layer = _built(backend, n_in=10, n_out=9, epsilon=50, zeta=0.7)
    assert layer.n_active == 90
    W = np.arange(1.0, 91.0).reshape(10, 9) / 100.0
    layer.parameters["W"] = backend.from_host(W)
    layer.evolve_connections()
    kept = _host(layer, "W") == W.astype(backend.dtype_name)
    assert kept.sum() == 27 and np.all(W[kept] > 0.63)  # the 27 largest survive
    assert _host(layer, "W_mask").sum() == 90
