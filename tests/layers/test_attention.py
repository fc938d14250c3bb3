"""DotProductAttention: against PyTorch autograd, finite differences, dropout, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.attention import DotProductAttention
from anyml.testing import assert_close, gradcheck

# Q, K, V shapes: (*, n_q, d_k), (*, n_kv, d_k), (*, n_kv, d_v); the spec's 2-D (n_ex, d_k) first
SHAPES = [((5, 4), (5, 4), (5, 3)), ((3, 4), (6, 4), (6, 2)),
          ((2, 3, 4), (2, 5, 4), (2, 5, 3)), ((2, 2, 1, 3), (2, 2, 4, 3), (2, 2, 4, 2))]


def _inputs(backend, shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(backend.dtype_name) for s in shapes]


def _torch_attention(torch, Q, K, V, scale, keep=None):
    Qt, Kt, Vt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (Q, K, V))
    Z = Qt @ Kt.transpose(-1, -2)
    if scale:
        Z = Z / np.sqrt(Q.shape[-1])
    A = torch.softmax(Z, dim=-1)
    if keep is not None:
        A = A * torch.tensor(keep, dtype=torch.float64)
    return Qt, Kt, Vt, A @ Vt


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("scale", [True, False])
def test_matches_torch_autograd(backend, shapes, scale):
    torch = pytest.importorskip("torch")
    Q, K, V = _inputs(backend, shapes)
    layer = DotProductAttention(scale=scale, backend=backend)
    Y = layer.forward(*(backend.asarray(a) for a in (Q, K, V)))
    dY = np.random.default_rng(1).standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    grads = layer.backward(backend.asarray(dY))
    assert isinstance(grads, tuple) and len(grads) == 3

    Qt, Kt, Vt, Yt = _torch_attention(torch, Q, K, V, scale)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    for got, want in zip(grads, (Qt, Kt, Vt), strict=True):
        assert_close(got, want.grad.numpy(), backend=backend)
    # the same as torch's own kernel
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a, dtype=torch.float64) for a in (Q, K, V)), scale=None if scale else 1.0)
    assert_close(Y, sdpa.numpy(), backend=backend)


@pytest.mark.parametrize("shapes", SHAPES)
def test_dropout_mask_is_kept_for_backward(backend, shapes):
    torch = pytest.importorskip("torch")
    Q, K, V = _inputs(backend, shapes, seed=2)
    layer = DotProductAttention(dropout_p=0.3, backend=backend)
    Y = layer.forward(*(backend.asarray(a) for a in (Q, K, V)))
    mask = anyml.to_numpy(layer.derived_variables["dropout_mask"][0])
    assert mask.shape == (*shapes[0][:-1], shapes[1][-2])
    assert set(np.unique(mask)) <= {0.0, 1.0}
    dY = np.random.default_rng(3).standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    grads = layer.backward(backend.asarray(dY))
    Qt, Kt, Vt, Yt = _torch_attention(torch, Q, K, V, True, keep=mask / 0.7)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    for got, want in zip(grads, (Qt, Kt, Vt), strict=True):
        assert_close(got, want.grad.numpy(), backend=backend)


def test_dropout_reproducible_from_seed_and_off_in_inference(make_backend_for):
    masks = []
    for _ in range(2):
        be = make_backend_for("float64", seed=11)
        layer = DotProductAttention(dropout_p=0.5, backend=be)
        layer.forward(be.rng.normal((2, 6, 3)), be.rng.normal((2, 6, 3)), be.rng.normal((2, 6, 3)))
        masks.append(anyml.to_numpy(layer.derived_variables["dropout_mask"][0]))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert 0 < masks[0].sum() < masks[0].size
    be = make_backend_for("float64")
    Q = be.rng.normal((2, 3, 3))
    eager = DotProductAttention(dropout_p=0.0, backend=be).forward(Q, Q, Q)
    for switch in ("eval", "freeze"):
        layer = DotProductAttention(dropout_p=0.5, backend=be)
        getattr(layer, switch)()
        assert not layer.dropout_active
        assert_close(layer.forward(Q, Q, Q), eager, backend=be)
        assert layer.derived_variables["dropout_mask"] == [None]


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("scale", [True, False])
def test_gradcheck(backend64, shapes, scale):
    layer = DotProductAttention(scale=scale, dropout_p=0, backend=backend64)
    gradcheck(layer, [backend64.asarray(a) for a in _inputs(backend64, shapes, seed=4)])


def test_repeated_forwards_backprop_in_reverse_order(backend64):
    layer = DotProductAttention(backend=backend64)
    a = [backend64.rng.normal(s) for s in SHAPES[2]]
    b = [backend64.rng.normal(s) for s in SHAPES[2]]
    Ya, Yb = layer.forward(*a), layer.forward(*b)
    gb = layer.backward(backend64.xp.ones_like(Yb))
    ga = layer.backward(backend64.xp.ones_like(Ya))
    fresh = DotProductAttention(backend=backend64)
    fresh.forward(*a)
    for got, want in zip(ga, fresh.backward(backend64.xp.ones_like(Ya)), strict=True):
        assert_close(got, want, backend=backend64)
    assert len(gb) == 3 and layer.X == []


def test_two_dimensional_inputs_attend_over_the_examples(backend):
    """The spec's (n_ex, d_k) form: every example is a query over all the examples' keys."""
    Q, K, V = (backend.asarray(a) for a in _inputs(backend, SHAPES[0], seed=6))
    layer = DotProductAttention(backend=backend)
    Y = layer.forward(Q, K, V)
    assert tuple(Y.shape) == (5, 3)
    batched = DotProductAttention(backend=backend).forward(*(a[None, ...] for a in (Q, K, V)))
    assert_close(Y, batched[0, ...], backend=backend)


def test_list_form_returns_three_lists(backend64):
    """numpy-ml's list form: one gradient per retained pass in, (dQs, dKs, dVs) out."""
    layer = DotProductAttention(backend=backend64)
    passes = [[backend64.rng.normal(s) for s in SHAPES[2]] for _ in range(2)]
    Ys = [layer.forward(*p) for p in passes]
    dYs = [backend64.rng.normal(tuple(Y.shape)) for Y in Ys]
    dQs, dKs, dVs = layer.backward(dYs)
    assert layer.X == []
    for i, p in enumerate(passes):
        fresh = DotProductAttention(backend=backend64)
        fresh.forward(*p)
        for got, want in zip((dQs[i], dKs[i], dVs[i]), fresh.backward(dYs[i]), strict=True):
            assert_close(got, want, backend=backend64)


def test_summary_round_trip(backend):
    layer = DotProductAttention(scale=False, dropout_p=0.25, backend=backend)
    summary = layer.summary()
    assert summary["parameters"] == {}
    assert summary["hyperparameters"]["dropout_p"] == 0.25
    fresh = DotProductAttention(backend=backend).set_params(summary)
    assert (fresh.scale, fresh.dropout_p) == (False, 0.25)
    fresh.eval()
    layer.eval()
    Q, K, V = (backend.asarray(a) for a in _inputs(backend, SHAPES[0]))
    assert_close(fresh.forward(Q, K, V), layer.forward(Q, K, V), backend=backend, rtol=0, atol=0)


def test_bad_input_errors(backend):
    layer = DotProductAttention(backend=backend)
    Q, K, V = (backend.asarray(a) for a in _inputs(backend, SHAPES[2]))
    with pytest.raises(ValueError, match=r"DotProductAttention: expected Q with at least 2 axes"):
        layer.forward(Q[0, 0, :], K, V)
    with pytest.raises(ValueError, match="DotProductAttention: expected Q .* matching axes"):
        layer.forward(Q[0, ...], K, V)  # 2-D Q with 3-D K
    with pytest.raises(ValueError, match="DotProductAttention: expected Q .* matching axes"):
        layer.forward(Q, K, V[:, :4, :])  # K and V disagree on n_kv
    with pytest.raises(ValueError, match="DotProductAttention: expected Q .* matching axes"):
        layer.forward(Q, V, V)  # d_k mismatch
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"DotProductAttention: expected K of dtype {backend.dtype_name}"):
        layer.forward(Q, backend.xp.astype(K, getattr(backend.xp, other)), V)
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="DotProductAttention: expected V to be a"):
            layer.forward(Q, K, anyml.to_numpy(V))
    Y = layer.forward(Q, K, V)
    with pytest.raises(ValueError, match="DotProductAttention: expected dLdy of shape"):
        layer.backward(backend.xp.ones((2, 3, 4), dtype=Y.dtype, device=Y.device))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"dropout_p": 1.0}, ValueError, "DotProductAttention: dropout_p must be a number in"),
    ({"dropout_p": -0.1}, ValueError, "DotProductAttention: dropout_p must be a number in"),
    ({"scale": 1}, TypeError, "DotProductAttention: scale must be True or False"),
    ({"init": "glorot_unifrm"}, ValueError, "unknown initializer"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DotProductAttention(**kwargs)
