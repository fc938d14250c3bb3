"""PyTorch's native kernels behind the pure functions: each equals the pure path, values and gradients.

Every test runs on each backend of the matrix whose class registers the fast path (the torch backend,
on the CPU here and on a CUDA device where the matrix has one); on the others it is skipped. The pure
reference is the same call inside ``use_fast_paths(False)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.backend import _torch_fast, fast_path, use_fast_paths
from anyml.functional import conv, embedding, norm, pool, softmax
from anyml.testing import assert_close


@pytest.fixture
def tb(backend):
    """The matrix backend, when it has native kernels for convolutions (torch)."""
    native = fast_path("conv2d_forward", backend.rng.normal((1,)))
    if getattr(native, "__module__", None) != _torch_fast.__name__:
        pytest.skip(f"{backend!r} registers none of PyTorch's kernels")
    return backend


def _both(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the fast paths on and off."""
    native = fn(*args, **kwargs)
    with use_fast_paths(False):
        pure = fn(*args, **kwargs)
    return native, pure


def _close(backend, got, want, name):
    assert_close(got, anyml.to_numpy(want), backend=backend, err_msg=name)


def _pair(tb, forward, backward, inputs, fkwargs, names, seed=0):
    """Forward and backward with the fast paths on and off, compared output and every gradient."""
    rng = np.random.default_rng(seed)
    results = []
    for enabled in (True, False):
        with use_fast_paths(enabled):
            out, cache = forward(*inputs, **fkwargs)
            if not results:
                dout = tb.asarray(rng.standard_normal(tuple(out.shape)))
            grads = backward(dout, cache)
            grads = grads if isinstance(grads, tuple) else (grads,)
        results.append((out, *grads))
    for name, got, want in zip(("out", *names), *results, strict=True):
        _close(tb, got, want, name)
    return results[0]


CONV_CASES = {
    "same": dict(pad="same", stride=1, dilation=0, bias=True),
    "asymmetric-dilated": dict(pad=(0, 2, 1, 0), stride=1, dilation=1, bias=True),
    "stride2": dict(pad=1, stride=2, dilation=0, bias=True),
    "stride-pair-no-bias": dict(pad=0, stride=(2, 1), dilation=0, bias=False),
}


@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
def test_conv2d_matches_the_pure_path(tb, case):
    X, W = tb.rng.normal((3, 7, 6, 4)), tb.rng.normal((3, 2, 4, 5))
    b = tb.rng.normal((5,)) if case["bias"] else None
    _, cache = conv.conv2d_forward(X, W, b, case["pad"], case["stride"], case["dilation"])
    assert type(cache).__name__ == "TorchGraph"
    _pair(tb, conv.conv2d_forward, conv.conv2d_backward, (X, W, b),
          dict(pad=case["pad"], stride=case["stride"], dilation=case["dilation"]), ("dX", "dW", "db"))


def test_conv1d_goes_through_the_native_conv2d(tb):
    X, W, b = tb.rng.normal((3, 11, 2)), tb.rng.normal((3, 2, 4)), tb.rng.normal((4,))
    for kwargs in (dict(pad="causal", dilation=1), dict(pad=(2, 1), stride=2)):
        _pair(tb, conv.conv1d_forward, conv.conv1d_backward, (X, W, b), kwargs, ("dX", "dW", "db"))


DECONV_CASES = [((3, 3), pad, stride) for pad in (0, 1, (1, 0, 0, 1), "same") for stride in (2, (2, 3))]
DECONV_CASES += [((1, 2), 0, (2, 3)), ((1, 2), (0, 0, 1, 0), 2)]  # a kernel smaller than the stride


@pytest.mark.parametrize(("kernel", "pad", "stride"), DECONV_CASES, ids=str)
def test_deconv2d_matches_the_pure_path(tb, kernel, pad, stride):
    X, W, b = tb.rng.normal((2, 4, 5, 3)), tb.rng.normal((*kernel, 3, 2)), tb.rng.normal((2,))
    _pair(tb, conv.deconv2d_forward, conv.deconv2d_backward, (X, W, b), dict(pad=pad, stride=stride),
          ("dX", "dW", "db"))


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize(("kernel", "stride", "pad"), [(2, 2, 0), (3, 1, 1), (3, 2, (0, 1, 2, 0)),
                                                      ((2, 3), (1, 2), "same"), (3, 2, (1, 2))],
                         ids=str)
def test_pool2d_matches_the_pure_path(tb, mode, kernel, stride, pad):
    X = tb.rng.normal((2, 7, 8, 3))
    _pair(tb, pool.pool2d_forward, pool.pool2d_backward, (X, kernel, stride, pad, mode), {}, ("dX",))


def test_max_pool_routes_ties_like_the_pure_path(tb):
    rng = np.random.default_rng(1)
    X = tb.asarray(rng.integers(0, 2, size=(2, 6, 6, 3)).astype(np.float64))
    _pair(tb, pool.pool2d_forward, pool.pool2d_backward, (X, 3, 1, 1, "max"), {}, ("dX",))


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6)], ids=["1d", "2d"])
def test_batchnorm_matches_the_pure_path_with_its_statistics(tb, shape):
    X = tb.rng.normal(shape) * 3.0 + 1.0
    g, b = tb.rng.normal((shape[-1],)), tb.rng.normal((shape[-1],))
    _pair(tb, norm.batchnorm_forward, norm.batchnorm_backward, (X, g, b), {}, ("dX", "dg", "db"))
    (_, native), (_, pure) = _both(norm.batchnorm_forward, X, g, b, 1e-3)
    for stat in ("mean", "var"):
        _close(tb, getattr(native, stat), getattr(pure, stat), stat)
    rm, rv = tb.rng.normal((shape[-1],)), tb.rng.uniform((shape[-1],), 0.5, 2.0)
    _pair(tb, norm.batchnorm_forward, norm.batchnorm_backward, (X, g, b),
          dict(running_mean=rm, running_var=rv), ("dX", "dg", "db"))


def test_batchnorm_hands_back_what_pytorch_does_not_cover(tb):
    X, g, b = tb.rng.normal((1, 4)), tb.rng.normal((4,)), tb.rng.normal((4,))
    (_, native), _ = _both(norm.batchnorm_forward, X, g, b)  # one value per feature
    assert type(native).__name__ == "NormCache"
    X = tb.rng.normal((6, 4))
    _, cache = norm.batchnorm_forward(X, g, b, reduce=lambda arrays: arrays)  # a single worker
    assert type(cache).__name__ == "NormCache"


@pytest.mark.parametrize("shape", [(6, 10), (3, 4, 5, 2)], ids=["1d", "2d"])
def test_layernorm_matches_the_pure_path(tb, shape):
    X = tb.rng.normal(shape) * 2.0 - 1.0
    g, b = tb.rng.normal(shape[1:]), tb.rng.normal(shape[1:])
    _pair(tb, norm.layernorm_forward, norm.layernorm_backward, (X, g, b), {"epsilon": 1e-4},
          ("dX", "dg", "db"))


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_matches_the_pure_path(tb, axis):
    X = tb.rng.normal((4, 6, 3)) * 5.0
    _pair(tb, softmax.softmax_forward, softmax.softmax_backward, (X,), {"axis": axis}, ("dX",))
    native, pure = _both(softmax.log_softmax, X, axis)
    _close(tb, native, pure, "log_softmax")


@pytest.mark.parametrize("pool_mode", [None, "sum", "mean"])
def test_embedding_matches_the_pure_path(tb, pool_mode):
    ids = tb.asarray(np.array([[1, 4, 4, 0], [7, 1, 4, 9], [4, 4, 2, 3]]), dtype="int64")
    W = tb.rng.normal((10, 3))
    rng = np.random.default_rng(0)
    results = []
    for enabled in (True, False):
        with use_fast_paths(enabled):
            Y, cache = embedding.embedding_forward(ids, W, pool_mode)
            dY = tb.asarray(rng.standard_normal(tuple(Y.shape))) if not results else results[0][2]
            dW = embedding.embedding_backward(dY, cache, tb.index_add,
                                              accumulate_into=tb.rng.normal((10, 3)) * 0.0)
        results.append((Y, dW, dY))
    (Y, dW, _), (Y0, dW0, _) = results
    _close(tb, Y, Y0, "Y")
    _close(tb, dW, dW0, "dW")


def test_a_cache_serves_a_second_backward(tb):
    X, W = tb.rng.normal((2, 5, 5, 3)), tb.rng.normal((3, 3, 3, 4))
    Z, cache = conv.conv2d_forward(X, W, None, 1)
    first = conv.conv2d_backward(Z, cache)
    for name, g, w in zip(("dX", "dW", "db"), conv.conv2d_backward(Z, cache), first, strict=True):
        _close(tb, g, w, name)


def test_a_pure_cache_is_handed_back_to_the_pure_backward(tb):
    X, W = tb.rng.normal((2, 5, 5, 3)), tb.rng.normal((3, 3, 3, 4))
    with use_fast_paths(False):
        Z, cache = conv.conv2d_forward(X, W, None, 1)
        want = conv.conv2d_backward(Z, cache)
        _, cache = conv.conv2d_forward(X, W, None, 1)
    got = conv.conv2d_backward(Z, cache)  # fast paths on, but the cache is the pure one
    for name, g, w in zip(("dX", "dW", "db"), got, want, strict=True):
        _close(tb, g, w, name)


def test_bad_input_raises_the_pure_paths_errors(tb):
    X, W = tb.rng.normal((2, 5, 5, 3)), tb.rng.normal((3, 3, 2, 4))
    with pytest.raises(ValueError, match="conv2d: expected W"):
        conv.conv2d_forward(X, W)
    with pytest.raises(ValueError, match="stride"):
        conv.conv2d_forward(X, tb.rng.normal((3, 3, 3, 4)), stride=0)
    with pytest.raises(ValueError, match="mode"):
        pool.pool2d_forward(X, 2, mode="median")


LAYERS = {
    "Conv2D": lambda be: (L.Conv2D(4, 3, pad="same", act_fn="ReLU", backend=be), (3, 6, 6, 2)),
    "Conv1D": lambda be: (L.Conv1D(4, 3, pad="causal", backend=be), (3, 9, 2)),
    "Deconv2D": lambda be: (L.Deconv2D(3, 3, stride=2, backend=be), (2, 4, 4, 2)),
    "Pool2D": lambda be: (L.Pool2D(3, stride=2, pad=1, backend=be), (2, 7, 7, 3)),
    "BatchNorm2D": lambda be: (L.BatchNorm2D(backend=be), (4, 3, 3, 2)),
    "LayerNorm1D": lambda be: (L.LayerNorm1D(backend=be), (4, 7)),
    "Softmax": lambda be: (L.Softmax(backend=be), (4, 7)),
    "BatchNorm1D": lambda be: (L.BatchNorm1D(backend=be), (5, 3)),
    "LayerNorm2D": lambda be: (L.LayerNorm2D(backend=be), (3, 2, 3, 2)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_give_the_same_results_and_gradients_on_either_path(tb, name):
    results = []
    for enabled in (True, False):
        tb.seed(0)  # the same initial weights
        layer, shape = LAYERS[name](tb)
        X = tb.asarray(np.random.default_rng(2).standard_normal(shape))
        with use_fast_paths(enabled):
            Y = layer.forward(X)
            dX = layer.backward(tb.asarray(np.random.default_rng(3).standard_normal(tuple(Y.shape))))
        results.append((Y, dX, dict(layer.gradients), dict(layer.parameters)))
    (Y, dX, grads, params), (Y0, dX0, grads0, params0) = results
    _close(tb, Y, Y0, f"{name} Y")
    _close(tb, dX, dX0, f"{name} dX")
    for key in grads0:
        _close(tb, grads[key], grads0[key], f"{name} d{key}")
    for key in params0:  # the running statistics of batch normalization
        _close(tb, params[key], params0[key], f"{name} {key}")
