"""FullyConnected: against PyTorch autograd, finite differences, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyml
from anyml.layers import FullyConnected
from anyml.testing import assert_close, default_tolerances, gradcheck

TORCH_ACTS = {"Identity": lambda t: t, "ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
              "LeakyReLU(alpha=0.2)": lambda t: __import__("torch").nn.functional.leaky_relu(t, 0.2)}


def _torch_act(name):
    import torch

    act = TORCH_ACTS[name]
    return getattr(torch, act) if isinstance(act, str) else act


@pytest.mark.parametrize("act", list(TORCH_ACTS))
@pytest.mark.parametrize(("n_ex", "n_in", "n_out"), [(1, 3, 2), (5, 4, 6)])
def test_matches_torch_autograd(backend, act, n_ex, n_in, n_out):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X, dY = rng.standard_normal((n_ex, n_in)), rng.standard_normal((n_ex, n_out))
    layer = FullyConnected(n_out, act_fn=act, backend=backend)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))

    W = torch.tensor(anyml.to_numpy(layer.parameters["W"]), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(anyml.to_numpy(layer.parameters["b"]), dtype=torch.float64, requires_grad=True)
    Xt = torch.tensor(X.astype(backend.dtype_name), dtype=torch.float64, requires_grad=True)
    Yt = _torch_act(act)(Xt @ W + b)
    Yt.backward(torch.tensor(dY.astype(backend.dtype_name), dtype=torch.float64))

    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(layer.gradients["W"], W.grad.numpy(), backend=backend)
    assert_close(layer.gradients["b"], b.grad.numpy(), backend=backend)


@pytest.mark.parametrize("act", ["Identity", "Tanh", "Sigmoid", "ELU", "GELU(approximate=False)"])
def test_gradcheck(backend64, act):
    layer = FullyConnected(4, act_fn=act, backend=backend64)
    X = backend64.rng.normal((3, 5))
    gradcheck(layer, [X])


def test_same_seed_same_parameters_on_every_backend(backend):
    reference = FullyConnected(7, backend=anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0))
    reference.forward(reference.backend.asarray(np.ones((2, 5))))
    layer = FullyConnected(7, backend=backend)
    layer.forward(backend.asarray(np.ones((2, 5))))
    for name in ("W", "b"):
        assert_close(layer.parameters[name], reference.parameters[name], backend=backend, rtol=0, atol=0)


def test_gradients_accumulate_over_repeated_forwards(backend64):
    layer = FullyConnected(3, backend=backend64)
    X1, X2 = backend64.rng.normal((2, 4)), backend64.rng.normal((5, 4))
    dY1, dY2 = backend64.rng.normal((2, 3)), backend64.rng.normal((5, 3))
    layer.forward(X1)
    layer.forward(X2)
    dX2 = layer.backward(dY2)
    dX1 = layer.backward(dY1)
    assert tuple(dX2.shape) == (5, 4) and tuple(dX1.shape) == (2, 4)
    xp = backend64.xp
    expected = xp.matrix_transpose(X1) @ dY1 + xp.matrix_transpose(X2) @ dY2
    assert_close(layer.gradients["W"], expected, backend=backend64)
    with pytest.raises(RuntimeError, match="FullyConnected: backward called with no retained"):
        layer.backward(dY1)


def test_frozen_layer_passes_gradients_but_keeps_parameters(backend64):
    layer = FullyConnected(3, backend=backend64, optimizer="SGD(lr=0.5)")
    X, dY = backend64.rng.normal((4, 2)), backend64.rng.normal((4, 3))
    layer.forward(X)
    layer.freeze()
    W_before = anyml.to_numpy(layer.parameters["W"]).copy()
    dX = layer.backward(dY)
    assert_close(dX, dY @ backend64.xp.matrix_transpose(layer.parameters["W"]), backend=backend64)
    layer.update()
    np.testing.assert_array_equal(anyml.to_numpy(layer.parameters["W"]), W_before)
    layer.unfreeze()
    layer.forward(X)
    layer.backward(dY)
    grad_W = anyml.to_numpy(layer.gradients["W"]).copy()
    layer.update()
    assert_close(layer.parameters["W"], W_before - 0.5 * grad_W, backend=backend64)
    assert_close(layer.gradients["W"], np.zeros_like(W_before), backend=backend64)


def test_update_with_nan_raises_a_clear_error(backend64):
    layer = FullyConnected(2, backend=backend64)
    layer.forward(backend64.rng.normal((3, 2)))
    layer.backward(backend64.asarray(np.full((3, 2), np.nan)))
    with pytest.raises(FloatingPointError, match=r"FullyConnected: parameter\(s\) \['W', 'b'\]"):
        layer.update()


def test_summary_round_trip(backend):
    layer = FullyConnected(4, act_fn="LeakyReLU(alpha=0.1)", init="he_normal",
                           optimizer="Adam(lr=0.01)", backend=backend)
    X = backend.rng.normal((3, 6))
    Y = layer.forward(X)
    summary = layer.summary()
    assert summary["layer"] == "FullyConnected"
    assert isinstance(summary["parameters"]["W"], np.ndarray)
    assert summary["hyperparameters"]["act_fn"] == "LeakyReLU(alpha=0.1)"
    fresh = FullyConnected(1, backend=backend).set_params(summary)
    assert fresh.n_in == 6 and fresh.n_out == 4
    assert str(fresh.act_fn) == "LeakyReLU(alpha=0.1)"
    assert fresh.optimizer == layer.optimizer
    assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


def test_set_params_accepts_numpy_ml_bias_layout(backend):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal((1, 2))
    layer = FullyConnected(2, backend=backend).set_params(
        {"parameters": {"W": W, "b": b}, "hyperparameters": {"layer": "FullyConnected", "n_out": 2}})
    X = rng.standard_normal((4, 3))
    Y = layer.forward(backend.asarray(X))
    tol = default_tolerances(backend.dtype_name)
    assert_close(Y, X @ W + b, backend=backend, rtol=tol[0], atol=tol[1] * 10)


@pytest.mark.parametrize(("summary", "match"), [
    ({"layer": "Conv2D"}, "describes a 'Conv2D' layer"),
    ({"hyperparameters": {"n_outt": 3}}, "unknown key 'n_outt'"),
    ({"parameters": {"W": np.zeros((3, 5)), "b": np.zeros(4)}}, "'b' should have shape"),
])
def test_set_params_errors(summary, match):
    with pytest.raises(ValueError, match=match):
        FullyConnected(5).set_params(summary)


def test_bad_input_errors(backend):
    layer = FullyConnected(3, backend=backend)
    msg = r"FullyConnected: expected X of shape \(n_ex, n_in\), got \(2, 3, 4\)"
    with pytest.raises(ValueError, match=msg):
        layer.forward(backend.rng.normal((2, 3, 4)))
    layer.forward(backend.rng.normal((2, 5)))
    with pytest.raises(ValueError, match=r"FullyConnected: expected X of shape \(n_ex, 5\)"):
        layer.forward(backend.rng.normal((2, 4)))
    with pytest.raises(ValueError, match=r"FullyConnected: expected dLdy of shape \(2, 3\)"):
        layer.backward(backend.rng.normal((2, 4)))
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"FullyConnected: expected X of dtype {backend.dtype_name}"):
        layer.forward(backend.xp.astype(backend.rng.normal((2, 5)), getattr(backend.xp, other)))
    foreign = np.ones((2, 5), dtype=backend.dtype_name) if backend.name != "numpy" else [[1.0] * 5]
    with pytest.raises(TypeError, match="FullyConnected: expected X to be a"):
        layer.forward(foreign)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n_out": 0}, ValueError, "n_out must be a positive integer"),
    ({"n_out": 2.5}, ValueError, "n_out must be a positive integer"),
    ({"n_out": 2, "act_fn": "relux"}, ValueError, "unknown activation 'relux'"),
    ({"n_out": 2, "init": "glorot_unifrm"}, ValueError, "unknown initializer"),
    ({"n_out": 2, "optimizer": "Adamm"}, ValueError, "unknown optimizer 'Adamm'"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FullyConnected(**kwargs)


def test_to_moves_parameters_gradients_and_optimizer_state(backend):
    source = anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0)
    layer = FullyConnected(3, optimizer="Adam(lr=0.01)", backend=source)
    X = np.random.default_rng(0).standard_normal((4, 2))
    layer.forward(source.asarray(X))
    layer.backward(source.asarray(np.ones((4, 3))))
    layer.update()
    expected = anyml.to_numpy(layer.forward(source.asarray(X), retain_derived=False))
    layer.to(backend)
    assert layer.backend is backend
    for state in layer.optimizer.cache.values():
        for value in state.values():
            if hasattr(value, "shape"):
                assert backend.owns(value)
    assert_close(layer.forward(backend.asarray(X)), expected, backend=backend)
    layer.backward(backend.asarray(np.ones((4, 3))))
    layer.update()
    assert backend.owns(layer.parameters["W"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_ex=st.integers(1, 6), n_in=st.integers(1, 7), n_out=st.integers(1, 7),
       data=st.data())
def test_property_forward_backward_shapes_and_values(n_ex, n_in, n_out, data):
    backend = anyml.make_backend(data.draw(st.sampled_from(["numpy", "array-api-strict"])),
                                 dtype="float64", seed=0)
    layer = FullyConnected(n_out, backend=backend)
    rng = np.random.default_rng(n_ex * 100 + n_in * 10 + n_out)
    X, dY = rng.standard_normal((n_ex, n_in)), rng.standard_normal((n_ex, n_out))
    Y = layer.forward(backend.asarray(X))
    W, b = anyml.to_numpy(layer.parameters["W"]), anyml.to_numpy(layer.parameters["b"])
    assert_close(Y, X @ W + b, backend=backend)
    dX = layer.backward(backend.asarray(dY))
    assert_close(dX, dY @ W.T, backend=backend)
    assert_close(layer.gradients["W"], X.T @ dY, backend=backend)
    assert_close(layer.gradients["b"], dY.sum(axis=0), backend=backend)


def test_set_params_refuses_a_transposed_weight(backend):
    layer = FullyConnected(6, backend=backend)
    layer.forward(backend.rng.normal((2, 4)))
    msg = r"FullyConnected.set_params: parameter 'W' should have shape \(4, 6\), got \(6, 4\)"
    with pytest.raises(ValueError, match=msg):
        layer.set_params({"W": np.zeros((6, 4))})
    with pytest.raises(ValueError, match=r"parameter 'b' should have shape \(6,\), got \(2, 3\)"):
        layer.set_params({"b": np.zeros((2, 3))})


@pytest.mark.parametrize("n_out", [True, 2.0, "3"])
def test_n_out_must_be_an_integer(n_out):
    with pytest.raises(ValueError, match="FullyConnected: n_out must be a positive integer"):
        FullyConnected(n_out)


def test_numpy_integers_are_accepted():
    assert FullyConnected(np.int64(3)).n_out == 3


def test_n_out_none_is_set_later_through_set_params(backend64):
    """numpy-ml builds a layer with n_out=None and sets it once the data's size is known."""
    layer = FullyConnected(None, act_fn="Sigmoid", backend=backend64)
    X = backend64.rng.normal((3, 5))
    with pytest.raises(ValueError, match=r"FullyConnected: n_out is not set; .*set_params\(\{'n_out'"):
        layer.forward(X)
    assert layer.X == [] and layer.parameters == {}
    assert layer.summary()["hyperparameters"]["n_out"] is None
    assert layer.set_params({"n_out": 4}) is layer
    Y = layer.forward(X)
    assert tuple(Y.shape) == (3, 4) and tuple(layer.parameters["W"].shape) == (5, 4)
    layer.backward(Y)
    gradcheck(layer, [X])
    with pytest.raises(ValueError, match="FullyConnected.set_params: n_out must be a positive integer"):
        layer.set_params({"n_out": 0})


def test_n_out_none_learns_it_from_loaded_parameters(backend):
    reference = FullyConnected(3, backend=backend)
    X = backend.rng.normal((2, 4))
    Y = reference.forward(X)
    params = reference.summary()["parameters"]
    for order in (("W", "b"), ("b", "W")):
        params_host = {k: params[k].reshape(1, -1) if k == "b" else params[k] for k in order}
        fresh = FullyConnected(None, backend=backend).set_params({"parameters": params_host})
        assert (fresh.n_in, fresh.n_out) == (4, 3)
        assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


def test_changing_n_out_redraws_the_weights(backend):
    layer = FullyConnected(2, backend=backend)
    layer.forward(backend.rng.normal((2, 4)))
    layer.set_params({"n_out": 5})
    assert tuple(layer.forward(backend.rng.normal((2, 4))).shape) == (2, 5)
