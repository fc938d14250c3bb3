"""The NumPy fast path of small stride-1 convolutions against the pure path (the same call inside
``use_fast_paths(False)``, as in ``test_torch_fast.py``): output and every gradient, and the cases it
hands back."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.backend import _numpy_fast_conv, use_fast_paths
from anyml.functional import conv
from anyml.testing import assert_close


def _both(nb, forward, backward, inputs, kwargs, seed=0):
    """Forward and backward with the fast paths on and off; the caches' types and the results."""
    results, kinds = [], []
    for enabled in (True, False):
        with use_fast_paths(enabled):
            out, cache = forward(*inputs, **kwargs)
            if not results:
                dout = nb.asarray(np.random.default_rng(seed).standard_normal(tuple(out.shape)))
            results.append((out, *backward(dout, cache)))
            kinds.append(type(cache).__name__)
    return results, kinds


def _assert_same(nb, results):
    for name, got, want in zip(("out", "dX", "dW", "db"), *results, strict=True):
        assert got.dtype == want.dtype, name
        assert_close(got, anyml.to_numpy(want), backend=nb, err_msg=name)


CASES = {
    "same": dict(pad="same", dilation=0, bias=True, act=None),
    "same-relu": dict(pad="same", dilation=0, bias=True, act="relu"),
    "valid-no-bias": dict(pad=0, dilation=0, bias=False, act=None),
    "asymmetric-dilated-relu": dict(pad=(0, 2, 1, 0), dilation=1, bias=True, act="relu"),
    "full": dict(pad=(2, 2, 1, 1), dilation=0, bias=True, act=None),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
@pytest.mark.parametrize(("x_shape", "w_shape"), [((3, 7, 6, 4), (3, 2, 4, 5)), ((1, 5, 5, 1), (3, 3, 1, 2))])
def test_conv2d_matches_the_pure_path(nb, case, x_shape, w_shape):
    X, W = nb.rng.normal(x_shape), nb.rng.normal(w_shape)
    b = nb.rng.normal((w_shape[3],)) if case["bias"] else None
    results, kinds = _both(nb, conv.conv2d_forward, conv.conv2d_backward, (X, W, b),
                           dict(pad=case["pad"], dilation=case["dilation"], act=case["act"]))
    assert kinds == ["NumpyConvCache", "ConvCache"]
    _assert_same(nb, results)


@pytest.mark.parametrize("kwargs", [dict(pad="causal", dilation=1), dict(pad="same"), dict(pad=0)])
def test_conv1d_goes_through_it(nb, kwargs):
    X, W, b = nb.rng.normal((3, 11, 2)), nb.rng.normal((3, 2, 4)), nb.rng.normal((4,))
    results, _ = _both(nb, conv.conv1d_forward, conv.conv1d_backward, (X, W, b), kwargs)
    _assert_same(nb, results)
    _, cache = conv.conv1d_forward(X, W, b, **kwargs)
    assert type(cache[0]).__name__ == "NumpyConvCache"


def test_relu_keeps_nan_and_masks_like_the_pure_path(nb):
    X, W = nb.rng.normal((2, 4, 4, 3)), nb.rng.normal((3, 3, 3, 2))
    X = anyml.to_numpy(X).copy()
    X[0, 1, 2, 0] = np.nan
    results, _ = _both(nb, conv.conv2d_forward, conv.conv2d_backward, (nb.asarray(X), W, None),
                       dict(pad="same", act="relu"))
    for got, want in zip(*results, strict=True):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(anyml.to_numpy(want)))


@pytest.mark.parametrize("why", ["large", "stride", "wide pad", "max_chunk"])
def test_other_convolutions_go_to_the_pure_path(nb, why):
    X, W = nb.rng.normal((2, 6, 6, 3)), nb.rng.normal((3, 3, 3, 4))
    kwargs: dict = dict(pad="same")
    if why == "large":
        X = nb.rng.normal((1, 128, 64, 1))  # columns of 128 * 64 * 9 values > MAX_COLUMNS
        W = nb.rng.normal((3, 3, 1, 2))
        assert _numpy_fast_conv.MAX_COLUMNS < 128 * 64 * 9
    elif why == "stride":
        kwargs = dict(pad=1, stride=2)
    elif why == "wide pad":
        kwargs = dict(pad=3)
    else:
        kwargs = dict(pad="same", max_chunk=50)
    assert _numpy_fast_conv.conv2d_forward(X, W, None, **kwargs) is NotImplemented
    _, cache = conv.conv2d_forward(X, W, None, **kwargs)
    assert type(cache).__name__ == "ConvCache"


def test_bad_input_raises_the_pure_paths_errors(nb):
    X, W = nb.rng.normal((2, 5, 5, 3)), nb.rng.normal((3, 3, 4, 2))  # W for 4 channels, X has 3
    with pytest.raises(ValueError, match=r"conv2d: expected W of shape \(kernel_rows, kernel_cols, 3"):
        conv.conv2d_forward(X, W, None, pad="same")
    with pytest.raises(ValueError, match="conv2d: unknown act 'tanh'"):
        conv.conv2d_forward(X, nb.rng.normal((3, 3, 3, 2)), None, pad="same", act="tanh")
    _, cache = conv.conv2d_forward(X, nb.rng.normal((3, 3, 3, 2)), None, pad="same")
    with pytest.raises(ValueError, match=r"conv2d: expected dZ of shape \(2, 5, 5, 2\), got \(2, 5, 5, 3\)"):
        conv.conv2d_backward(nb.rng.normal((2, 5, 5, 3)), cache)


def test_a_layer_trains_the_same_either_way(nb):
    """A Conv2D layer's forward, backward and update on the fast path equal the pure path's."""
    X = nb.rng.normal((2, 6, 6, 3))
    start: dict = {}
    params = []
    for enabled in (True, False):
        with use_fast_paths(enabled):
            layer = L.Conv2D(4, (3, 3), pad="same", act_fn="ReLU", optimizer="sgd", backend=nb)
            layer.forward(X, retain_derived=False)
            if start:
                layer.set_params(start)
            else:
                start = {k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()}
            for _ in range(3):
                Y = layer.forward(X)
                layer.backward(Y * 0.5 - 1.0)
                layer.update()
            params.append({k: anyml.to_numpy(v) for k, v in layer.parameters.items()})
    for name in ("W", "b"):
        assert not np.array_equal(params[0][name], start[name]), name  # it did train
        assert_close(params[0][name], params[1][name], backend=nb, err_msg=name)
