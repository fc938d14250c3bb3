"""BatchNorm1D/2D and LayerNorm1D/2D: against PyTorch autograd, finite differences, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.norm import BatchNorm1D, BatchNorm2D, LayerNorm1D, LayerNorm2D
from anyml.testing import assert_close, gradcheck

BN = {"BatchNorm1D": (BatchNorm1D, (6, 3)), "BatchNorm2D": (BatchNorm2D, (2, 3, 2, 4))}
LN = {"LayerNorm1D": (LayerNorm1D, (4, 5)), "LayerNorm2D": (LayerNorm2D, (2, 3, 2, 4))}
ALL = {**BN, **LN}


def _host(shape, seed, dtype, loc=0.0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + loc).astype(dtype)


def _with_random_params(layer, backend, X_shape, seed=5):
    """Create the parameters with a first forward, then give scaler/intercept random values."""
    layer.forward(backend.asarray(_host(X_shape, 0, backend.dtype_name)), retain_derived=False)
    rng = np.random.default_rng(seed)
    shape = tuple(layer.parameters["scaler"].shape)
    layer.set_params({"parameters": {"scaler": rng.uniform(0.5, 1.5, shape),
                                     "intercept": rng.standard_normal(shape)}})
    return layer


def _torch_bn(torch, X, layer, training, running=None):
    F = torch.nn.functional
    g = torch.tensor(anyml.to_numpy(layer.parameters["scaler"]), dtype=torch.float64,
                     requires_grad=True)
    b = torch.tensor(anyml.to_numpy(layer.parameters["intercept"]), dtype=torch.float64,
                     requires_grad=True)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    mean, var = (None, None) if running is None else (torch.tensor(r, dtype=torch.float64)
                                                       for r in running)
    Y = F.batch_norm(Xt.movedim(-1, 1), mean, var, g, b, training=training,
                     eps=layer.epsilon).movedim(1, -1)
    return Xt, g, b, Y


# --------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("name", list(BN))
def test_batchnorm_training_matches_torch(backend, name):
    torch = pytest.importorskip("torch")
    cls, shape = BN[name]
    layer = _with_random_params(cls(momentum=0.8, backend=backend), backend, shape)
    X = _host(shape, 1, backend.dtype_name, loc=2.0, scale=3.0)
    dY = _host(shape, 2, backend.dtype_name)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))

    Xt, g, b, Yt = _torch_bn(torch, X, layer, training=True)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(layer.gradients["scaler"], g.grad.numpy(), backend=backend)
    assert_close(layer.gradients["intercept"], b.grad.numpy(), backend=backend)
    # running statistics: momentum * running + (1 - momentum) * batch, biased batch variance
    axes = tuple(range(len(shape) - 1))
    X64 = X.astype(np.float64)
    assert_close(layer.parameters["running_mean"], 0.2 * X64.mean(axis=axes), backend=backend)
    assert_close(layer.parameters["running_var"], 0.8 + 0.2 * X64.var(axis=axes), backend=backend)
    assert set(layer.gradients) == {"scaler", "intercept"}


@pytest.mark.parametrize("name", list(BN))
@pytest.mark.parametrize("mode", ["eval", "frozen"])
def test_batchnorm_inference_uses_running_stats(backend, name, mode):
    torch = pytest.importorskip("torch")
    cls, shape = BN[name]
    layer = _with_random_params(cls(backend=backend), backend, shape)
    n = shape[-1]
    rng = np.random.default_rng(7)
    mean, var = rng.standard_normal(n), rng.uniform(0.5, 2.0, n)
    layer.set_params({"parameters": {"running_mean": mean, "running_var": var}})
    if mode == "eval":
        assert layer.eval() is layer and not layer.uses_batch_stats
    else:
        layer.freeze()
    X, dY = _host(shape, 1, backend.dtype_name), _host(shape, 2, backend.dtype_name)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))
    Xt, g, _, Yt = _torch_bn(torch, X, layer, training=False,
                             running=(mean.astype(backend.dtype_name), var.astype(backend.dtype_name)))
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    # running statistics are untouched in inference
    assert_close(layer.parameters["running_mean"], mean, backend=backend)
    assert_close(layer.parameters["running_var"], var, backend=backend)
    if mode == "eval":
        assert_close(layer.gradients["scaler"], g.grad.numpy(), backend=backend)
        layer.train()
        assert layer.training and layer.uses_batch_stats


@pytest.mark.parametrize("name", list(BN))
def test_batchnorm_running_stats_not_trained_and_not_updated_without_retain(backend64, name):
    cls, shape = BN[name]
    layer = cls(optimizer="SGD(lr=0.1)", backend=backend64)
    X = backend64.asarray(_host(shape, 3, "float64", loc=1.0))
    layer.forward(X, retain_derived=False)
    n = shape[-1]
    assert_close(layer.parameters["running_mean"], np.zeros(n), backend=backend64)
    assert_close(layer.parameters["running_var"], np.ones(n), backend=backend64)
    layer.forward(X)
    layer.backward(backend64.asarray(_host(shape, 4, "float64")))
    mean = anyml.to_numpy(layer.parameters["running_mean"]).copy()
    scaler = anyml.to_numpy(layer.parameters["scaler"]).copy()
    grad = anyml.to_numpy(layer.gradients["scaler"]).copy()
    layer.update()
    assert_close(layer.parameters["running_mean"], mean, backend=backend64, rtol=0, atol=0)
    assert_close(layer.parameters["scaler"], scaler - 0.1 * grad, backend=backend64)
    assert "running_mean" not in layer.gradients and "running_var" not in layer.gradients
    layer.reset_running_stats()
    assert_close(layer.parameters["running_mean"], np.zeros(n), backend=backend64)
    assert_close(layer.parameters["running_var"], np.ones(n), backend=backend64)


@pytest.mark.parametrize("name", list(BN))
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(backend64, name, training):
    cls, shape = BN[name]
    layer = _with_random_params(cls(backend=backend64), backend64, shape)
    layer.set_params({"parameters": {"running_mean": np.full(shape[-1], 0.3),
                                     "running_var": np.full(shape[-1], 1.7)}})
    layer.train(training)
    gradcheck(layer, [backend64.asarray(_host(shape, 8, "float64", loc=1.0, scale=2.0))])


@pytest.mark.parametrize("name", list(ALL))
def test_parameters_loaded_before_the_first_forward_are_kept(backend64, name):
    cls, shape = ALL[name]
    param_shape = shape[-1:] if name.startswith("Batch") else shape[1:]
    scaler = np.random.default_rng(0).uniform(0.5, 1.5, param_shape)
    layer = cls(backend=backend64).set_params({"parameters": {"scaler": scaler}})
    layer.forward(backend64.asarray(_host(shape, 1, "float64")))
    assert_close(layer.parameters["scaler"], scaler, backend=backend64, rtol=0, atol=0)
    assert set(layer.parameters) >= {"scaler", "intercept"}


def test_reset_running_stats_before_first_forward_is_harmless():
    layer = BatchNorm1D()
    layer.reset_running_stats()
    assert layer.parameters == {}


# --------------------------------------------------------------------------- layer norm
@pytest.mark.parametrize("name", list(LN))
def test_layernorm_matches_torch(backend, name):
    torch = pytest.importorskip("torch")
    cls, shape = LN[name]
    layer = _with_random_params(cls(epsilon=1e-3, backend=backend), backend, shape)
    assert tuple(layer.parameters["scaler"].shape) == shape[1:]
    X = _host(shape, 1, backend.dtype_name, loc=-1.0, scale=2.0)
    dY = _host(shape, 2, backend.dtype_name)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))
    g = torch.tensor(anyml.to_numpy(layer.parameters["scaler"]), dtype=torch.float64,
                     requires_grad=True)
    b = torch.tensor(anyml.to_numpy(layer.parameters["intercept"]), dtype=torch.float64,
                     requires_grad=True)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Yt = torch.nn.functional.layer_norm(Xt, shape[1:], g, b, eps=1e-3)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(layer.gradients["scaler"], g.grad.numpy(), backend=backend)
    assert_close(layer.gradients["intercept"], b.grad.numpy(), backend=backend)


@pytest.mark.parametrize("name", list(LN))
def test_layernorm_gradcheck(backend64, name):
    cls, shape = LN[name]
    layer = _with_random_params(cls(backend=backend64), backend64, shape)
    gradcheck(layer, [backend64.asarray(_host(shape, 8, "float64", loc=1.0, scale=2.0))])


# --------------------------------------------------------------------------- the layer API
@pytest.mark.parametrize("name", list(ALL))
def test_same_seed_same_parameters_on_every_backend(backend, name):
    cls, shape = ALL[name]
    ref_backend = anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0)
    reference, layer = cls(backend=ref_backend), cls(backend=backend)
    reference.forward(ref_backend.asarray(np.ones(shape)))
    layer.forward(backend.asarray(np.ones(shape)))
    assert set(layer.parameters) == set(reference.parameters)
    for key, value in reference.parameters.items():
        assert_close(layer.parameters[key], value, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(ALL))
def test_summary_round_trip(backend, name):
    cls, shape = ALL[name]
    layer = _with_random_params(cls(optimizer="Adam(lr=0.01)", backend=backend), backend, shape)
    X = backend.asarray(_host(shape, 1, backend.dtype_name))
    layer.forward(X)  # moves the running statistics of batch norm
    summary = layer.summary()
    assert summary["layer"] == name
    assert all(isinstance(v, np.ndarray) for v in summary["parameters"].values())
    fresh = cls(backend=backend).set_params(summary)
    assert fresh.optimizer == layer.optimizer
    assert fresh.hyperparameters == layer.hyperparameters
    for mode in (True, False):
        layer.train(mode)
        fresh.train(mode)
        assert_close(fresh.forward(X, retain_derived=False), layer.forward(X, retain_derived=False),
                     backend=backend, rtol=0, atol=0)


def test_set_params_accepts_numpy_ml_layout():
    rng = np.random.default_rng(0)
    summary = {"layer": "BatchNorm1D",
               "parameters": {"scaler": rng.uniform(size=(3,)), "intercept": rng.standard_normal(3),
                              "running_mean": rng.standard_normal(3), "running_var": np.ones(3)},
               "hyperparameters": {"layer": "BatchNorm1D", "act_fn": None, "n_in": 3, "n_out": 3,
                                   "epsilon": 1e-5, "momentum": 0.5}}
    layer = BatchNorm1D(backend=anyml.make_backend("numpy", dtype="float64")).set_params(summary)
    assert layer.n_in == 3 and layer.momentum == 0.5
    layer.eval()
    X = rng.standard_normal((2, 3))
    p = summary["parameters"]
    expected = p["scaler"] * (X - p["running_mean"]) / np.sqrt(1 + 1e-5) + p["intercept"]
    assert_close(layer.forward(X), expected)


def test_set_params_refuses_an_activation():
    with pytest.raises(ValueError, match="LayerNorm2D.set_params: normalization layers have no"):
        LayerNorm2D().set_params({"act_fn": "ReLU"})


@pytest.mark.parametrize("name", list(ALL))
def test_bad_input_errors(backend, name):
    cls, shape = ALL[name]
    layer = cls(backend=backend)
    with pytest.raises(ValueError, match=f"{name}: expected X of shape"):
        layer.forward(backend.rng.normal((2, 3, 4)))
    layer.forward(backend.rng.normal(shape))
    wrong = (*shape[:-1], shape[-1] + 1)
    with pytest.raises(ValueError, match=f"{name}: expected X of shape"):
        layer.forward(backend.rng.normal(wrong))
    with pytest.raises(ValueError, match=f"{name}: expected dLdy of shape"):
        layer.backward(backend.rng.normal(wrong))
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"{name}: expected X of dtype"):
        layer.forward(backend.xp.astype(backend.rng.normal(shape), getattr(backend.xp, other)))
    foreign = np.ones(shape, dtype=backend.dtype_name) if backend.name != "numpy" else [[1.0]]
    with pytest.raises(TypeError, match=f"{name}: expected X to be a"):
        layer.forward(foreign)
    layer.flush_gradients()
    with pytest.raises(RuntimeError, match=f"{name}: backward called with no retained"):
        layer.backward(backend.rng.normal(shape))


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (BatchNorm1D, {"momentum": 1.5}, "BatchNorm1D: momentum must be a number in"),
    (BatchNorm2D, {"momentum": "0.9"}, "BatchNorm2D: momentum must be a number in"),
    (BatchNorm1D, {"epsilon": 0}, "BatchNorm1D: epsilon must be a positive number"),
    (LayerNorm1D, {"epsilon": -1e-5}, "LayerNorm1D: epsilon must be a positive number"),
    (LayerNorm2D, {"epsilon": None}, "LayerNorm2D: epsilon must be a positive number"),
    (BatchNorm1D, {"optimizer": "Adamm"}, "unknown optimizer 'Adamm'"),
])
def test_bad_constructor_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)
