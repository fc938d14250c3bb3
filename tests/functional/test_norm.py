"""Batch and layer normalization kernels against PyTorch float64 autograd, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.functional.norm import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from anyml.testing import assert_close

SHAPES = [(5, 3), (2, 3, 4, 2)]
# layouts of the fast paths: batch norm folded into long rows (several of them, one, or none when the
# value count has no fitting divisor, here the prime 3001, or the features alone are too many); layer
# norm with rows summed by vecdot (>= 64 values) and with rows long enough to skip the cached gain
BN_LAYOUTS = [(40, 10, 10, 5), (3001, 7), (8, 17000), (64, 256)]
LN_LAYOUTS = [(3, 100), (2, 8192), (2, 16, 16, 40)]


def _data(shape, param_shape, dtype):
    rng = np.random.default_rng(sum(shape))
    X = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    g = rng.uniform(0.5, 1.5, param_shape).astype(dtype)
    b = rng.standard_normal(param_shape).astype(dtype)
    return X, dY, g, b


def _leaf(torch, a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("shape", SHAPES + BN_LAYOUTS)
def test_batchnorm_training_matches_torch(backend, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, dY, g, b = _data(shape, shape[-1:], backend.dtype_name)
    Y, cache = batchnorm_forward(*(backend.asarray(a) for a in (X, g, b)), epsilon=1e-5)
    dX, dg, db = batchnorm_backward(backend.asarray(dY), cache)

    Xt, gt, bt = _leaf(torch, X), _leaf(torch, g), _leaf(torch, b)
    Xc = Xt.movedim(-1, 1)  # torch wants channels second
    Yt = F.batch_norm(Xc, None, None, gt, bt, training=True, eps=1e-5).movedim(1, -1)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(dg, gt.grad.numpy(), backend=backend)
    assert_close(db, bt.grad.numpy(), backend=backend)
    axes = tuple(range(len(shape) - 1))
    assert_close(cache.mean, X.astype(np.float64).mean(axis=axes, keepdims=True), backend=backend)
    assert_close(cache.var, X.astype(np.float64).var(axis=axes, keepdims=True), backend=backend)


@pytest.mark.parametrize("shape", SHAPES + BN_LAYOUTS[:2])
def test_batchnorm_with_running_stats_matches_torch(backend, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, dY, g, b = _data(shape, shape[-1:], backend.dtype_name)
    rng = np.random.default_rng(3)
    mean = rng.standard_normal(shape[-1]).astype(backend.dtype_name)
    var = rng.uniform(0.5, 2.0, shape[-1]).astype(backend.dtype_name)
    Y, cache = batchnorm_forward(*(backend.asarray(a) for a in (X, g, b)), epsilon=1e-3,
                                 running_mean=backend.asarray(mean), running_var=backend.asarray(var))
    assert not cache.batch_stats
    dX, dg, db = batchnorm_backward(backend.asarray(dY), cache)

    Xt, gt, bt = _leaf(torch, X), _leaf(torch, g), _leaf(torch, b)
    Yt = F.batch_norm(Xt.movedim(-1, 1), torch.tensor(mean, dtype=torch.float64),
                      torch.tensor(var, dtype=torch.float64), gt, bt, training=False,
                      eps=1e-3).movedim(1, -1)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    for got, want in ((Y, Yt.detach()), (dX, Xt.grad), (dg, gt.grad), (db, bt.grad)):
        assert_close(got, want.numpy(), backend=backend)


@pytest.mark.parametrize("shape", SHAPES + LN_LAYOUTS)
def test_layernorm_matches_torch(backend, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, dY, g, b = _data(shape, shape[1:], backend.dtype_name)
    Y, cache = layernorm_forward(*(backend.asarray(a) for a in (X, g, b)), epsilon=1e-5)
    dX, dg, db = layernorm_backward(backend.asarray(dY), cache)

    Xt, gt, bt = _leaf(torch, X), _leaf(torch, g), _leaf(torch, b)
    Yt = F.layer_norm(Xt, shape[1:], gt, bt, eps=1e-5)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    for got, want in ((Y, Yt.detach()), (dX, Xt.grad), (dg, gt.grad), (db, bt.grad)):
        assert_close(got, want.numpy(), backend=backend)


def test_explicit_namespace_gives_the_same_result(backend):
    X, _, g, b = _data((4, 3), (3,), backend.dtype_name)
    args = [backend.asarray(a) for a in (X, g, b)]
    Y1, _ = batchnorm_forward(*args)
    Y2, _ = batchnorm_forward(*args, xp=backend.xp)
    assert_close(Y2, Y1, backend=backend, rtol=0, atol=0)


@pytest.mark.usefixtures("pure_paths")
def test_inputs_are_left_alone(backend):
    """The kernels update their own arrays in place, never the caller's or the cached ones."""
    for shape, forward, backward, p_shape in (
            ((40, 10, 10, 5), batchnorm_forward, batchnorm_backward, (5,)),
            ((3, 100), layernorm_forward, layernorm_backward, (100,)),
            ((2, 8192), layernorm_forward, layernorm_backward, (8192,))):
        X, dY, g, b = _data(shape, p_shape, backend.dtype_name)
        arrays = [backend.asarray(a) for a in (X, dY, g, b)]
        _, cache = forward(arrays[0], arrays[2], arrays[3])
        kept = [backend.to_host(a).copy() for a in (cache.centred, cache.inv_std)]
        backward(arrays[1], cache)
        backward(arrays[1], cache)  # a second backward from the same cache
        for got, want in zip(arrays, (X, dY, g, b), strict=True):
            assert_close(got, want, backend=backend, rtol=0, atol=0)
        for got, want in zip((cache.centred, cache.inv_std), kept, strict=True):
            assert_close(got, want, backend=backend, rtol=0, atol=0)


def test_layernorm_backward_consuming_the_cache_gives_the_same_gradients(backend):
    X, dY, g, b = _data((6, 4, 5), (4, 5), backend.dtype_name)
    arrays = [backend.asarray(a) for a in (X, g, b)]
    _, cache = layernorm_forward(*arrays)
    _, spent = layernorm_forward(*arrays)
    kept = layernorm_backward(backend.asarray(dY), cache)
    consumed = layernorm_backward(backend.asarray(dY), spent, consume_cache=True)
    for got, want in zip(consumed, kept, strict=True):
        assert_close(got, want, backend=backend, rtol=0, atol=0)
