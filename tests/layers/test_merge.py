"""Add and Multiply: against PyTorch autograd, finite differences, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyml
from anyml.layers import Add, Multiply
from anyml.testing import assert_close, gradcheck

LAYERS = {"Add": Add, "Multiply": Multiply}


def _torch_merge(name, tensors, act):
    import torch

    out = tensors[0]
    for t in tensors[1:]:
        out = out + t if name == "Add" else out * t
    return {"Identity": out, "Tanh": torch.tanh(out), "ReLU": torch.relu(out)}[act]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("act", ["Identity", "Tanh", "ReLU"])
@pytest.mark.parametrize(("n_inputs", "shape"), [(1, (2, 3)), (2, (4,)), (3, (2, 3, 2))])
def test_matches_torch_autograd(backend, name, act, n_inputs, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    hosts = [rng.standard_normal(shape).astype(backend.dtype_name) for _ in range(n_inputs)]
    dY = rng.standard_normal(shape).astype(backend.dtype_name)
    layer = LAYERS[name](act_fn=act, backend=backend)
    Y = layer.forward([backend.asarray(h) for h in hosts])
    grads = layer.backward(backend.asarray(dY))
    assert isinstance(grads, list) and len(grads) == n_inputs

    tensors = [torch.tensor(h, dtype=torch.float64, requires_grad=True) for h in hosts]
    Yt = _torch_merge(name, tensors, act)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    for grad, tensor in zip(grads, tensors, strict=True):
        assert_close(grad, tensor.grad.numpy(), backend=backend)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("act", ["Identity", "Sigmoid"])
def test_gradcheck(backend64, name, act):
    layer = LAYERS[name](act_fn=act, backend=backend64)
    inputs = [backend64.rng.normal((2, 3)) for _ in range(3)]
    gradcheck(layer, inputs, forward=lambda xs, retain: layer.forward(list(xs), retain_derived=retain))


def test_multiply_gradient_with_a_zero_input_is_finite(backend64):
    layer = Multiply(backend=backend64)
    a = backend64.asarray([[0.0, 2.0]])
    b = backend64.asarray([[3.0, 4.0]])
    layer.forward([a, b])
    da, db = layer.backward(backend64.asarray([[1.0, 1.0]]))
    assert_close(da, [[3.0, 4.0]], backend=backend64)
    assert_close(db, [[0.0, 2.0]], backend=backend64)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("n_inputs", [4, 5])
def test_many_inputs_match_torch_and_leave_the_arrays_alone(backend, name, n_inputs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n_inputs)
    hosts = [rng.standard_normal((3, 2, 2)).astype(backend.dtype_name) for _ in range(n_inputs)]
    dY = rng.standard_normal((3, 2, 2)).astype(backend.dtype_name)
    layer = LAYERS[name](backend=backend)
    inputs, upstream = [backend.asarray(h) for h in hosts], backend.asarray(dY)
    Y = layer.forward(inputs)
    grads = layer.backward(upstream)

    tensors = [torch.tensor(h, dtype=torch.float64, requires_grad=True) for h in hosts]
    Yt = _torch_merge(name, tensors, "Identity")
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    for grad, tensor in zip(grads, tensors, strict=True):
        assert_close(grad, tensor.grad.numpy(), backend=backend)
    # the in-place products work on arrays of their own: inputs and upstream gradient are unchanged
    for x, h in zip(inputs, hosts, strict=True):
        assert_close(x, h, backend=backend, rtol=0, atol=0)
    assert_close(upstream, dY, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_weight_sharing_two_forwards_two_backwards(backend64, name):
    layer = LAYERS[name](backend=backend64)
    a, b, c = (backend64.asarray(np.full((2,), v)) for v in (2.0, 3.0, 5.0))
    layer.forward([a, b, c])
    layer.forward([c, c, a])
    ones = backend64.asarray(np.ones(2))
    second, first = layer.backward(ones), layer.backward(ones)
    if name == "Multiply":
        assert_close(second[0], np.full(2, 10.0), backend=backend64)
        assert_close(second[2], np.full(2, 25.0), backend=backend64)
        assert_close(first[1], np.full(2, 10.0), backend=backend64)
    else:
        assert_close(first[0], np.ones(2), backend=backend64)


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_type_does_not_depend_on_forward_count(backend, name):
    layer = LAYERS[name](backend=backend)
    x = backend.rng.normal((2, 2))
    layer.forward([x, x])
    layer.forward([x, x])
    first, second = layer.backward(x), layer.backward(x)
    assert isinstance(first, list) and isinstance(second, list)


@pytest.mark.parametrize("name", list(LAYERS))
def test_summary_round_trip(backend, name):
    layer = LAYERS[name](act_fn="ELU(alpha=0.5)", optimizer="RMSProp", backend=backend)
    fresh = LAYERS[name](backend=backend).set_params(layer.summary())
    assert str(fresh.act_fn) == "ELU(alpha=0.5)"
    x = backend.rng.normal((2, 3))
    assert_close(fresh.forward([x, x]), layer.forward([x, x]), backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_bad_input_errors(backend, name):
    layer = LAYERS[name](backend=backend)
    x = backend.rng.normal((2, 3))
    with pytest.raises(TypeError, match=f"{name}: expected X as a list"):
        layer.forward(x)
    with pytest.raises(TypeError, match=f"{name}: expected X as a list"):
        layer.forward([])
    with pytest.raises(ValueError, match=rf"{name}: expected all inputs of shape \(2, 3\)"):
        layer.forward([x, backend.rng.normal((3, 2))])
    with pytest.raises(TypeError, match=rf"{name}: expected X\[1\] to be a"):
        layer.forward([x, object()])
    with pytest.raises(ValueError, match="unknown activation 'sigmod'"):
        LAYERS[name](act_fn="sigmod", backend=backend)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), n_inputs=st.integers(1, 4),
       name=st.sampled_from(list(LAYERS)))
def test_property_shapes_and_values(shape, n_inputs, name):
    backend = anyml.make_backend("array-api-strict", dtype="float64")
    rng = np.random.default_rng(len(shape) * 10 + n_inputs)
    hosts = [rng.standard_normal(shape) for _ in range(n_inputs)]
    layer = LAYERS[name](backend=backend)
    Y = layer.forward([backend.asarray(h) for h in hosts])
    expected = np.sum(hosts, axis=0) if name == "Add" else np.prod(hosts, axis=0)
    assert_close(Y, expected, backend=backend)
    grads = layer.backward(backend.asarray(np.ones(shape)))
    for i, grad in enumerate(grads):
        others = [h for j, h in enumerate(hosts) if j != i]
        want = np.ones(shape) if name == "Add" else np.prod(others, axis=0) if others else np.ones(shape)
        assert_close(grad, want, backend=backend)


def test_add_returns_distinct_gradient_arrays(backend):
    layer = Add(backend=backend)
    x = backend.rng.normal((2, 3))
    layer.forward([x, x, x])
    dY = backend.rng.normal((2, 3))
    expected = anyml.to_numpy(dY).copy()
    grads = layer.backward(dY)
    grads[1] += 1.0  # a residual connection adding into one branch must not change the others
    assert_close(grads[2], expected, backend=backend)
    assert_close(dY, expected, backend=backend)


def test_numpy_ml_sum_summary_loads(backend):
    summary = {"layer": "Sum", "parameters": {},
               "hyperparameters": {"layer": "Sum", "act_fn": "ReLU",
                                   "optimizer": {"cache": {}, "hyperparameters": {"id": "SGD", "lr": 0.01}}}}
    layer = Add(backend=backend).set_params(summary)
    assert str(layer.act_fn) == "ReLU"
