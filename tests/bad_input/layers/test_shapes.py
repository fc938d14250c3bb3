"""Zero-size shapes for all 21 layers: an empty batch computes an empty output (and gradient); an
empty axis the parameters depend on, a softmax over nothing, attention without keys, are refused
clearly. Plus a bounded hypothesis fuzz of shapes and settings for the convolutions, pooling,
recurrent layers, embedding and attention: each call computes or raises ValueError/TypeError
naming the layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyml
from anyml import layers as L  # noqa: N812
from tests.bad_input._catalogue import CASES
from tests.bad_input._helpers import clear, refused

NAMES = sorted(CASES)


def _outputs(out):
    return list(out) if isinstance(out, tuple | list) else [out]


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(backend, name):
    case = CASES[name]
    layer = case.build(backend)
    case.forward(layer, case.inputs(backend, 3), retain_derived=False)  # sizes learned
    layer.flush_gradients()  # the cells start a new sequence
    if name.startswith("BatchNorm"):
        layer.eval()  # training refuses an empty batch, see test_batchnorm_refuses_tiny_batches
    out = case.forward(layer, case.inputs(backend, 0))
    outs = _outputs(out)
    assert all(int(o.shape[0]) == 0 for o in outs)
    if name == "RBM":
        layer.backward()
    else:
        grads = _outputs(layer.backward(outs[0] + 1.0))
        assert all(int(g.shape[0]) == 0 for g in grads if hasattr(g, "shape"))
    for key, grad in layer.gradients.items():
        assert np.isfinite(anyml.to_numpy(grad)).all(), key
    for key, value in layer.parameters.items():
        assert np.isfinite(anyml.to_numpy(value)).all(), key


@pytest.mark.parametrize("name", NAMES)
def test_empty_feature_axes(backend, name):
    """Every non-batch axis of every input set to 0, one at a time: computed (parameter-free layers,
    as the maths says) or refused naming the layer."""
    case = CASES[name]
    for i, shape in enumerate(case.shapes(3)):
        for axis in range(1, len(shape)):
            shapes = case.shapes(3)
            if case.list_input:  # Add and Multiply need equal shapes
                shapes = [tuple(0 if a == axis else d for a, d in enumerate(s)) for s in shapes]
            else:
                shapes[i] = tuple(0 if a == axis else d for a, d in enumerate(shape))
            host = [np.zeros(s, dtype=np.int64 if case.ids else backend.dtype_name) for s in shapes]
            layer = case.build(backend)
            try:
                out = case.forward(layer, [backend.asarray(h) for h in host])
            except (ValueError, TypeError) as exc:
                clear(name, exc)
                assert not layer.parameters or all(
                    int(np.prod(v.shape)) > 0 for v in layer.parameters.values())
                continue
            for o in _outputs(out):
                assert np.isfinite(anyml.to_numpy(o)).all()


def test_softmax_over_an_empty_axis(backend):
    layer = L.Softmax(backend=backend)
    X = backend.asarray(np.zeros((3, 0), dtype=backend.dtype_name))
    Y = layer.forward(X)
    assert tuple(Y.shape) == (3, 0)
    assert tuple(layer.backward(Y).shape) == (3, 0)


def test_attention_without_keys_or_width(backend):
    z = lambda *s: backend.asarray(np.zeros(s, dtype=backend.dtype_name))  # noqa: E731
    layer = L.DotProductAttention(backend=backend)
    refused("DotProductAttention", layer.forward, z(2, 3, 4), z(2, 0, 4), z(2, 0, 5), match="keys")
    refused("DotProductAttention", layer.forward, z(2, 3, 0), z(2, 3, 0), z(2, 3, 5), match="d_k")
    assert tuple(layer.forward(z(2, 0, 4), z(2, 3, 4), z(2, 3, 5)).shape) == (2, 0, 5)


@pytest.mark.parametrize("name", ["BatchNorm1D", "BatchNorm2D"])
@pytest.mark.parametrize("n_ex", [0, 1])
def test_batchnorm_refuses_tiny_batches(backend, name, n_ex):
    case = CASES[name]
    layer = case.build(backend)
    shape = case.shapes(n_ex)[0]
    if name == "BatchNorm2D" and n_ex == 1:
        shape = (1, 1, 1, shape[-1])  # one value per channel
    X = backend.asarray(np.ones(shape, dtype=backend.dtype_name))
    layer.forward(case.inputs(backend, 3)[0], retain_derived=False)
    before = {k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()}
    refused(name, layer.forward, X, match="at least 2 values per feature")
    for k, v in layer.parameters.items():
        np.testing.assert_array_equal(anyml.to_numpy(v), before[k])
    layer.eval()
    assert np.isfinite(anyml.to_numpy(layer.forward(X))).all()


def test_batchnorm2d_one_example_of_many_pixels_is_fine(backend):
    layer = L.BatchNorm2D(backend=backend)
    Y = layer.forward(backend.asarray(np.random.default_rng(0).standard_normal(
        (1, 3, 3, 2)).astype(backend.dtype_name)))
    assert np.isfinite(anyml.to_numpy(Y)).all()


# --------------------------------------------------------------------------- fuzz
_FUZZ = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
dims = st.integers(0, 6)
small = st.integers(-2, 5)
pads = st.one_of(st.sampled_from(["same", "valid", "causal", "nope", -1]), st.integers(-1, 3),
                 st.tuples(small, small))


def _attempt(name, build, shapes, be, ids=False):
    """Build and run forward and backward; any refusal must be a clear one."""
    try:
        layer = build()
        inputs = [be.asarray(np.random.default_rng(0).integers(0, 5, s) if ids
                             else np.random.default_rng(0).standard_normal(s).astype(
                                 be.dtype_name)) for s in shapes]
        out = layer.forward(*inputs)
        outs = _outputs(out)
        for o in outs:
            assert np.isfinite(anyml.to_numpy(o)).all()
        layer.backward(outs[0] * 0 + 1)
    except (ValueError, TypeError) as exc:
        clear(name, exc)


@pytest.fixture
def be_fuzz(make_backend_for):
    return make_backend_for("float64")


@_FUZZ
@given(kind=st.sampled_from(["Conv1D", "Conv2D", "Deconv2D", "Pool2D"]), n=st.integers(0, 2),
       rows=dims, cols=dims, ch=dims, out_ch=small, k=st.tuples(small, small), stride=small,
       pad=pads, dilation=st.integers(-1, 2), mode=st.sampled_from(["max", "average", "sum"]))
def test_fuzz_convolutions_and_pooling(be_fuzz, kind, n, rows, cols, ch, out_ch, k, stride, pad,
                                       dilation, mode):
    be = be_fuzz
    if kind == "Conv1D":
        build = lambda: L.Conv1D(out_ch, k[0], pad=pad, stride=stride, dilation=dilation,  # noqa: E731
                                 backend=be)
        shapes = [(n, rows, ch)]
    elif kind == "Pool2D":
        build = lambda: L.Pool2D(k, stride=stride, pad=pad, mode=mode, backend=be)  # noqa: E731
        shapes = [(n, rows, cols, ch)]
    else:
        cls = getattr(L, kind)
        build = lambda: cls(out_ch, k, pad=pad, stride=stride, dilation=dilation,  # noqa: E731
                            backend=be)
        shapes = [(n, rows, cols, ch)]
    _attempt(kind, build, shapes, be)


@_FUZZ
@given(kind=st.sampled_from(["RNN", "LSTM", "RNNCell", "LSTMCell"]), n=st.integers(0, 2),
       n_in=dims, n_t=dims, n_out=small, act=st.sampled_from(["Tanh", "ReLU", "Nope", None]))
def test_fuzz_recurrent(be_fuzz, kind, n, n_in, n_t, n_out, act):
    cls = getattr(L, kind)
    shapes = [(n, n_in, n_t)] if kind in ("RNN", "LSTM") else [(n, n_in)]
    _attempt(kind, lambda: cls(n_out, act_fn=act, backend=be_fuzz), shapes, be_fuzz)


@_FUZZ
@given(n=st.integers(0, 2), length=dims, n_out=small, vocab=small,
       pool=st.sampled_from([None, "mean", "sum", "max", "nope"]))
def test_fuzz_embedding(be_fuzz, n, length, n_out, vocab, pool):
    _attempt("Embedding", lambda: L.Embedding(n_out, vocab, pool=pool, backend=be_fuzz),
             [(n, length)], be_fuzz, ids=True)


@_FUZZ
@given(n=st.integers(0, 2), n_q=dims, n_kv=dims, d_k=dims, d_v=dims, d_k2=dims,
       p=st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))),
       scale=st.sampled_from([True, False, 1]))
def test_fuzz_attention(be_fuzz, n, n_q, n_kv, d_k, d_v, d_k2, p, scale):
    _attempt("DotProductAttention",
             lambda: L.DotProductAttention(scale=scale, dropout_p=p, backend=be_fuzz),
             [(n, n_q, d_k), (n, n_kv, d_k2), (n, n_kv, d_v)], be_fuzz)
