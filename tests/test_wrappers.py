"""The Dropout wrapper: statistics, masks, gradients, delegation to the wrapped layer."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.dense import FullyConnected
from anyml.layers.norm import BatchNorm1D
from anyml.testing import assert_close, gradcheck
from anyml.wrappers import Dropout


def _identity_layer(backend, n):
    layer = FullyConnected(n, backend=backend)
    return layer.set_params({"parameters": {"W": np.eye(n), "b": np.zeros(n)}})


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_expected_output_equals_input(backend, p):
    n_ex = 40000
    c = np.array([1.5, -2.0, 0.5])
    wrapped = Dropout(_identity_layer(backend, 3), p)
    X = backend.asarray(np.tile(c, (n_ex, 1)))
    Y = anyml.to_numpy(wrapped.forward(X, retain_derived=False)).astype(np.float64)
    # each output is c / (1 - p) with probability 1 - p, else 0: mean c, std |c| sqrt(p / (1 - p))
    standard_error = np.abs(c) * np.sqrt(p / (1 - p) / n_ex)
    np.testing.assert_array_less(np.abs(Y.mean(axis=0) - c), 5 * standard_error)
    kept = (Y != 0).mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / Y.size)
    np.testing.assert_allclose(np.unique(Y[:, 0]), sorted([0.0, 1.5 / (1 - p)]), rtol=1e-6)


def test_mask_is_reproducible_from_the_seed(make_backend_for):
    masks = []
    for _ in range(2):
        be = make_backend_for("float32", seed=3)
        wrapped = Dropout(FullyConnected(2, backend=be), 0.5)
        wrapped.forward(be.asarray(np.ones((6, 5))))
        masks.append(anyml.to_numpy(wrapped.derived_variables["dropout_mask"][0]))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert set(np.unique(masks[0])) == {0.0, 1.0}


@pytest.mark.parametrize("act", ["Identity", "Tanh"])
def test_backward_uses_the_forward_mask_and_matches_torch(backend, act):
    torch = pytest.importorskip("torch")
    p = 0.4
    wrapped = Dropout(FullyConnected(3, act_fn=act, backend=backend), p)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 4)).astype(backend.dtype_name)
    dY = rng.standard_normal((5, 3)).astype(backend.dtype_name)
    X_b, dY_b = backend.asarray(X), backend.asarray(dY)
    Y = wrapped.forward(X_b)
    wrapped.forward(backend.asarray(rng.standard_normal((5, 4))))  # a second pass, another mask
    mask = anyml.to_numpy(wrapped.derived_variables["dropout_mask"][0])
    second = anyml.to_numpy(wrapped.derived_variables["dropout_mask"][1])
    assert not np.array_equal(mask, second)
    wrapped.backward(backend.xp.zeros_like(dY_b))  # pops the second pass; adds zero gradients
    dX = wrapped.backward(dY_b)

    W = torch.tensor(anyml.to_numpy(wrapped.parameters["W"]), dtype=torch.float64,
                     requires_grad=True)
    b = torch.tensor(anyml.to_numpy(wrapped.parameters["b"]), dtype=torch.float64,
                     requires_grad=True)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Z = (Xt * torch.tensor(mask / (1 - p), dtype=torch.float64)) @ W + b
    Yt = torch.tanh(Z) if act == "Tanh" else Z
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(wrapped.gradients["W"], W.grad.numpy(), backend=backend)
    assert_close(wrapped.gradients["b"], b.grad.numpy(), backend=backend)
    # the caller's arrays are unchanged
    np.testing.assert_array_equal(anyml.to_numpy(dY_b), dY)
    np.testing.assert_array_equal(anyml.to_numpy(X_b), X)


def test_gradcheck_with_a_fixed_mask(backend64):
    wrapped = Dropout(FullyConnected(3, act_fn="Tanh", backend=backend64), 0.3)
    X = backend64.rng.normal((4, 5))
    mask = backend64.asarray((np.random.default_rng(1).random((4, 5)) > 0.3).astype(float))

    def forward(xs, retain):
        return wrapped.forward(xs[0], retain_derived=retain, mask=mask)

    gradcheck(wrapped, [X], forward=forward)
    forward([X], True)
    assert_close(wrapped.derived_variables["dropout_mask"][0], mask, backend=backend64)


@pytest.mark.parametrize("switch", ["eval", "freeze"])
def test_inactive_in_inference_and_when_frozen(backend, switch):
    base = FullyConnected(3, backend=backend)
    wrapped = Dropout(base, 0.5)
    X = backend.rng.normal((4, 2))
    expected = anyml.to_numpy(base.forward(X, retain_derived=False))
    getattr(wrapped, switch)()
    assert not wrapped.active
    assert_close(wrapped.forward(X), expected, backend=backend, rtol=0, atol=0)
    dY = backend.rng.normal((4, 3))
    assert_close(wrapped.backward(dY), dY @ backend.xp.matrix_transpose(base.parameters["W"]),
                 backend=backend)
    if switch == "eval":
        assert not base.training
        wrapped.train()
        assert wrapped.active and base.training
    else:
        assert not base.trainable
        wrapped.unfreeze()
        assert wrapped.active and base.trainable


def test_train_and_eval_reach_the_wrapped_layer(backend):
    wrapped = Dropout(BatchNorm1D(backend=backend), 0.1)
    assert wrapped.eval() is wrapped
    assert not wrapped.training and not wrapped.base_layer.training
    assert not wrapped.uses_batch_stats  # looked up on the wrapped layer


def test_delegates_parameters_update_and_summary(backend):
    base = FullyConnected(3, optimizer="SGD(lr=0.5)", backend=backend)
    wrapped = Dropout(base, 0.25)
    X = backend.rng.normal((4, 2))
    wrapped.forward(X)
    assert wrapped.parameters is base.parameters and wrapped.gradients is base.gradients
    assert wrapped.n_out == 3 and wrapped.is_initialized and wrapped.backend is backend
    assert len(wrapped.X) == 1
    wrapped.backward(backend.rng.normal((4, 3)))
    W_before = anyml.to_numpy(base.parameters["W"]).copy()
    grad = anyml.to_numpy(base.gradients["W"]).copy()
    wrapped.update()
    assert_close(base.parameters["W"], W_before - 0.5 * grad, backend=backend)
    assert wrapped.derived_variables == {} and base.X == []

    summary = wrapped.summary()
    assert summary["layer"] == "FullyConnected"
    assert summary["hyperparameters"]["wrappers"] == [{"wrapper": "Dropout", "p": 0.25}]
    fresh = Dropout(FullyConnected(1, backend=backend), 0.9).set_params(summary)
    assert fresh.p == 0.25 and fresh.n_out == 3
    bare = FullyConnected(1, backend=backend).set_params(summary)
    wrapped.eval()
    fresh.eval()
    out = wrapped.forward(X)
    assert_close(fresh.forward(X), out, backend=backend, rtol=0, atol=0)
    assert_close(bare.forward(X), out, backend=backend, rtol=0, atol=0)


def test_nested_wrappers_round_trip(backend):
    wrapped = Dropout(Dropout(FullyConnected(2, backend=backend), 0.1), 0.2)
    wrapped.forward(backend.rng.normal((3, 4)))
    hp = wrapped.hyperparameters
    assert hp["wrappers"] == [{"wrapper": "Dropout", "p": 0.1}, {"wrapper": "Dropout", "p": 0.2}]
    fresh = Dropout(Dropout(FullyConnected(2, backend=backend), 0.5), 0.5)
    fresh.set_params({**wrapped.summary(), "layer_wrappers": ["Dropout", "Dropout"]})
    assert fresh.p == 0.2 and fresh.base_layer.p == 0.1
    assert "Dropout(Dropout(FullyConnected" in repr(fresh)


def test_to_moves_the_wrapped_layer(backend):
    source = anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0)
    wrapped = Dropout(FullyConnected(2, backend=source), 0.3)
    wrapped.forward(source.rng.normal((3, 4)))
    assert wrapped.to(backend) is wrapped
    assert wrapped.backend is backend and backend.owns(wrapped.parameters["W"])
    assert wrapped.derived_variables == {}
    assert tuple(wrapped.forward(backend.rng.normal((3, 4))).shape) == (3, 2)


def test_bad_inputs(backend):
    wrapped = Dropout(FullyConnected(2, backend=backend), 0.5)
    with pytest.raises(RuntimeError, match="Dropout: backward called with no retained"):
        wrapped.backward(backend.rng.normal((3, 2)))
    X = backend.rng.normal((3, 4))
    with pytest.raises(ValueError, match=r"Dropout: expected mask of shape \(3, 4\)"):
        wrapped.forward(X, mask=backend.rng.normal((3, 3)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="Dropout: expected X to be a"):
            wrapped.forward(anyml.to_numpy(X))
    wrapped.forward(X)
    with pytest.raises(ValueError, match="FullyConnected: expected dLdy of shape"):
        wrapped.backward(backend.rng.normal((3, 3)))
    assert len(wrapped.derived_variables["dropout_mask"]) == 1  # still in step with the layer
    assert tuple(wrapped.backward(backend.rng.normal((3, 2))).shape) == (3, 4)


@pytest.mark.parametrize(("args", "error", "match"), [
    ((1.0,), ValueError, r"Dropout: p \(the drop probability\) must be a number in \[0, 1\)"),
    ((-0.1,), ValueError, "Dropout: p"),
    (("0.5",), ValueError, "Dropout: p"),
])
def test_bad_p(args, error, match):
    with pytest.raises(error, match=match):
        Dropout(FullyConnected(2), *args)


def test_wrapping_a_non_layer_is_an_error():
    with pytest.raises(TypeError, match="Dropout: expected a layer to wrap"):
        Dropout(object(), 0.5)


def test_dropout_as_a_layer_of_its_own(backend, tmp_path):
    """Dropout(p) in a Sequential drops the previous layer's output; it saves and loads."""
    import anyml
    from anyml.layers import Identity, Softmax

    layer = Dropout(0.5, backend=backend)
    assert isinstance(layer.base_layer, Identity) and layer.p == 0.5
    assert isinstance(Dropout(p=0.25, backend=backend).base_layer, Identity)
    X = backend.asarray(np.ones((200, 10)))
    Y = anyml.to_numpy(layer.forward(X))
    assert set(np.unique(Y)) <= {0.0, 2.0} and 0.35 < np.mean(Y == 0) < 0.65
    np.testing.assert_array_equal(anyml.to_numpy(layer.backward(backend.asarray(np.ones((200, 10))))), Y)
    layer.eval()
    np.testing.assert_array_equal(anyml.to_numpy(layer.forward(X)), np.ones((200, 10)))
    model = anyml.Sequential([FullyConnected(6, act_fn="ReLU", backend=backend),
                              Dropout(0.2, backend=backend), FullyConnected(2, backend=backend),
                              Softmax(backend=backend)], loss="ce")
    Xh = np.random.default_rng(0).standard_normal((8, 3))
    model.fit(Xh, np.arange(8) % 2, epochs=1, verbose=False)
    anyml.save(model, tmp_path / "m.npz")
    loaded = anyml.load(tmp_path / "m.npz", backend=backend)
    assert isinstance(loaded.layers[1], Dropout) and loaded.layers[1].p == 0.2
    np.testing.assert_array_equal(anyml.to_numpy(loaded.predict(Xh)), anyml.to_numpy(model.predict(Xh)))
    with pytest.raises(ValueError, match="Dropout: p .* is required"):
        Dropout(FullyConnected(2, backend=backend))
