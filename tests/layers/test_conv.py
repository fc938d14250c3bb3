"""Conv1D, Conv2D and Deconv2D: against PyTorch float64 autograd, finite differences, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.functional import conv
from anyml.layers.conv import Conv1D, Conv2D, Deconv2D
from anyml.testing import assert_close, gradcheck

# (kernel, pad, stride, dilation, x_shape, out_ch, act_fn)
CONV2D_CASES = {
    "basic": ((3, 3), 0, 1, 0, (2, 5, 6, 3), 4, None),
    "nonsquare-stride2-batch1": ((2, 3), 1, 2, 0, (1, 7, 6, 2), 3, "ReLU"),
    "pair-pad-tuple-stride": ((3, 2), (1, 2), (2, 3), 0, (2, 6, 7, 2), 3, None),
    "asym-pad-dilation": ((3, 3), (0, 2, 1, 1), 1, 1, (2, 7, 6, 2), 2, "Tanh"),
    "same": ((3, 3), "same", 1, 0, (2, 5, 5, 3), 4, None),
    "same-stride2": ((3, 3), "same", 2, 0, (2, 6, 7, 2), 3, None),
    "same-stride3-even-kernel-dilation2": ((2, 4), "same", (3, 2), 2, (1, 5, 7, 2), 2, "Tanh"),
    "same-even-kernel-dilation": ((2, 2), "same", 1, 1, (1, 5, 4, 2), 2, None),
    "1x1": ((1, 1), 0, 1, 0, (2, 3, 3, 4), 2, None),
    "kernel-gt-stride": ((4, 4), 0, 2, 0, (2, 6, 8, 1), 2, None),
    "kernel-gt-input-padded-stride3": ((5, 3), 2, 3, 0, (1, 4, 5, 2), 2, None),
}
# (kernel_width, pad, stride, dilation, x_shape, out_ch, act_fn)
CONV1D_CASES = {
    "basic": (3, 0, 1, 0, (2, 7, 3), 4, None),
    "stride2-batch1": (2, 1, 2, 0, (1, 8, 2), 3, "ReLU"),
    "pair-pad-dilation": (3, (2, 0), 1, 1, (2, 9, 2), 2, None),
    "same": (3, "same", 1, 0, (2, 6, 2), 3, None),
    "same-stride3-dilation": (4, "same", 3, 1, (2, 10, 2), 2, "Tanh"),
    "causal": (3, "causal", 1, 0, (2, 6, 2), 3, None),
    "causal-stride2-dilation2": (3, "causal", 2, 2, (1, 9, 2), 2, None),
    "causal-stride3-even-kernel": (4, "causal", 3, 0, (2, 8, 2), 2, "ReLU"),
    "same-stride2-even-kernel-odd-length": (2, "same", 2, 0, (1, 7, 3), 2, None),
    "right-pad-stride2": (5, (0, 3), 2, 0, (2, 7, 1), 2, None),
}
# (kernel, pad, stride, x_shape, out_ch, act_fn)
DECONV_CASES = {
    "basic": ((3, 3), 0, 1, (2, 3, 4, 3), 2, None),
    "pad1-stride2": ((3, 3), 1, 2, (2, 4, 3, 2), 3, "ReLU"),
    "nonsquare-tuple-stride": ((2, 3), 0, (2, 3), (1, 3, 4, 2), 2, None),
    "asym-pad": ((4, 4), (1, 0, 2, 1), 2, (2, 3, 3, 2), 2, None),
    "same-stride2": ((3, 3), "same", 2, (2, 3, 4, 2), 2, None),
    "same-even-kernel-stride3": ((2, 4), "same", 3, (1, 3, 2, 2), 2, None),
    "same-kernel-lt-stride": ((1, 2), "same", (2, 3), (2, 3, 3, 1), 2, "Tanh"),
    "disjoint": ((2, 2), 0, 2, (2, 3, 3, 2), 3, "Tanh"),
    "1x1-batch1": ((1, 1), 0, 1, (1, 3, 3, 2), 2, None),
    "stride-gt-kernel-pair-pad": ((3, 2), (1, 0), 3, (2, 3, 2, 2), 2, None),
}


def _ids(cases):
    return {"argvalues": list(cases.values()), "ids": list(cases)}


def _torch_act(torch, act):
    return {None: lambda t: t, "ReLU": torch.relu, "Tanh": torch.tanh}[act]


def _leaf(torch, a):
    return torch.tensor(np.asarray(anyml.to_numpy(a), dtype=np.float64), requires_grad=True)


def _same(n, k_eff, s):
    """numpy-ml's "same": the fewest zeros for which floor((n + total - k_eff) / s) + 1 == n."""
    total = next(t for t in range(10 * (n + k_eff) * s) if (n + t - k_eff) // s + 1 == n)
    return total // 2, total - total // 2


def _causal(n, k_eff, s):
    return sum(_same(n, k_eff, s)), 0


def _deconv_same_crop(k):
    """numpy-ml's Deconv2D "same": k - 1 cropped in all, the odd one at the top/left."""
    return (k - 1) - (k - 1) // 2, (k - 1) // 2


def _pads2d(pad, x_shape, kernel, stride, dilation):
    """(top, bottom, left, right), computed here independently of anyml."""
    sr, sc = (stride, stride) if isinstance(stride, int) else stride
    keff = [k * (dilation + 1) - dilation for k in kernel]
    if pad == "same":
        return (*_same(x_shape[1], keff[0], sr), *_same(x_shape[2], keff[1], sc))
    if isinstance(pad, int):
        return (pad,) * 4
    if len(pad) == 2:
        return (pad[0], pad[0], pad[1], pad[1])
    return pad


def _random_params(rng, w_shape, dtype):
    return {"W": rng.standard_normal(w_shape).astype(dtype),
            "b": rng.standard_normal(w_shape[-1]).astype(dtype)}


def _run(layer, backend, X, rng):
    Y = layer.forward(backend.asarray(X))
    dY = rng.standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    dX = layer.backward(backend.asarray(dY))
    return Y, dY, dX


def _compare(backend, layer, Y, dX, Xt, Wt, bt, Yt, dY):
    Yt.backward(__import__("torch").tensor(dY, dtype=Yt.dtype))
    assert_close(Y, Yt.detach().numpy(), backend=backend, err_msg="Y")
    assert_close(dX, Xt.grad.numpy(), backend=backend, err_msg="dX")
    assert_close(layer.gradients["W"], Wt.grad.numpy(), backend=backend, err_msg="dW")
    assert_close(layer.gradients["b"], bt.grad.numpy(), backend=backend, err_msg="db")


# ------------------------------------------------------------------------------ against torch
@pytest.mark.parametrize(("kernel", "pad", "stride", "dilation", "x_shape", "out_ch", "act"),
                         **_ids(CONV2D_CASES))
def test_conv2d_matches_torch(backend, kernel, pad, stride, dilation, x_shape, out_ch, act):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    X = rng.standard_normal(x_shape).astype(backend.dtype_name)
    params = _random_params(rng, (*kernel, x_shape[3], out_ch), backend.dtype_name)
    layer = Conv2D(out_ch, kernel, pad=pad, stride=stride, dilation=dilation, act_fn=act,
                   backend=backend).set_params({"parameters": params})
    Y, dY, dX = _run(layer, backend, X, rng)

    Xt, Wt, bt = _leaf(torch, X), _leaf(torch, params["W"]), _leaf(torch, params["b"])
    top, bottom, left, right = _pads2d(pad, x_shape, kernel, stride, dilation)
    Xc = F.pad(Xt.permute(0, 3, 1, 2), (left, right, top, bottom))
    Zt = F.conv2d(Xc, Wt.permute(3, 2, 0, 1), bt, stride=stride, dilation=dilation + 1)
    Yt = _torch_act(torch, act)(Zt).permute(0, 2, 3, 1)
    _compare(backend, layer, Y, dX, Xt, Wt, bt, Yt, dY)
    if pad == "same":
        assert tuple(Y.shape[1:3]) == x_shape[1:3]


@pytest.mark.parametrize(("kernel", "pad", "stride", "dilation", "x_shape", "out_ch", "act"),
                         **_ids(CONV1D_CASES))
def test_conv1d_matches_torch(backend, kernel, pad, stride, dilation, x_shape, out_ch, act):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    X = rng.standard_normal(x_shape).astype(backend.dtype_name)
    params = _random_params(rng, (kernel, x_shape[2], out_ch), backend.dtype_name)
    layer = Conv1D(out_ch, kernel, pad=pad, stride=stride, dilation=dilation, act_fn=act,
                   backend=backend).set_params({"parameters": params})
    Y, dY, dX = _run(layer, backend, X, rng)

    k_eff = kernel * (dilation + 1) - dilation
    if pad == "same":
        left, right = _same(x_shape[1], k_eff, stride)
    elif pad == "causal":
        left, right = _causal(x_shape[1], k_eff, stride)
    else:
        left, right = (pad, pad) if isinstance(pad, int) else pad
    Xt, Wt, bt = _leaf(torch, X), _leaf(torch, params["W"]), _leaf(torch, params["b"])
    Xc = F.pad(Xt.permute(0, 2, 1), (left, right))
    Zt = F.conv1d(Xc, Wt.permute(2, 1, 0), bt, stride=stride, dilation=dilation + 1)
    Yt = _torch_act(torch, act)(Zt).permute(0, 2, 1)
    _compare(backend, layer, Y, dX, Xt, Wt, bt, Yt, dY)
    if isinstance(pad, str):
        assert Y.shape[1] == x_shape[1]


@pytest.mark.parametrize(("kernel", "pad", "stride", "x_shape", "out_ch", "act"),
                         **_ids(DECONV_CASES))
def test_deconv2d_matches_torch(backend, kernel, pad, stride, x_shape, out_ch, act):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    X = rng.standard_normal(x_shape).astype(backend.dtype_name)
    params = _random_params(rng, (*kernel, x_shape[3], out_ch), backend.dtype_name)
    layer = Deconv2D(out_ch, kernel, pad=pad, stride=stride, act_fn=act,
                     backend=backend).set_params({"parameters": params})
    Y, dY, dX = _run(layer, backend, X, rng)

    s = (stride, stride) if isinstance(stride, int) else stride
    if pad == "same":
        top, bottom, left, right = (*_deconv_same_crop(kernel[0]), *_deconv_same_crop(kernel[1]))
    else:
        top, bottom, left, right = _pads2d(pad, x_shape, kernel, stride, 0)
    Xt, Wt, bt = _leaf(torch, X), _leaf(torch, params["W"]), _leaf(torch, params["b"])
    full = F.conv_transpose2d(Xt.permute(0, 3, 1, 2), Wt.permute(2, 3, 0, 1).contiguous(), bt,
                              stride=stride)
    Zt = full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right]
    Yt = _torch_act(torch, act)(Zt).permute(0, 2, 3, 1)
    _compare(backend, layer, Y, dX, Xt, Wt, bt, Yt, dY)
    if pad == "same":
        assert tuple(Y.shape[1:3]) == (s[0] * (x_shape[1] - 1) + 1, s[1] * (x_shape[2] - 1) + 1)


def test_deconv2d_int_pad_is_torch_padding(backend64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 4, 3, 2))
    params = _random_params(rng, (3, 3, 2, 3), "float64")
    layer = Deconv2D(3, (3, 3), pad=1, stride=2, backend=backend64).set_params(
        {"parameters": params})
    Y = layer.forward(backend64.asarray(X))
    Yt = torch.nn.functional.conv_transpose2d(
        torch.tensor(X).permute(0, 3, 1, 2), torch.tensor(params["W"]).permute(2, 3, 0, 1),
        torch.tensor(params["b"]), stride=2, padding=1)
    assert_close(Y, Yt.permute(0, 2, 3, 1).numpy(), backend=backend64)


# ------------------------------------------------------------------------ finite differences
GRADCHECK_2D = {
    "stride2-asym-pad": ((2, 3), (1, 0, 0, 2), 2, 0, (1, 4, 5, 2), 2, "Tanh"),
    "same-dilation": ((2, 2), "same", 1, 1, (2, 3, 4, 1), 2, None),
    "same-stride2-3-dilation": ((2, 3), "same", (2, 3), 1, (1, 3, 4, 1), 2, "Tanh"),
    "pair-stride": ((3, 2), (1, 1), (2, 1), 0, (1, 5, 4, 2), 2, None),
}
GRADCHECK_1D = {
    "causal-dilation": (3, "causal", 1, 1, (2, 6, 2), 2, None),
    "same-stride2": (2, "same", 2, 0, (1, 7, 3), 2, "Tanh"),
    "causal-stride3-dilation": (2, "causal", 3, 1, (2, 5, 2), 2, None),
    "pair-pad-stride3": (3, (2, 1), 3, 0, (2, 5, 2), 2, None),
}
GRADCHECK_DECONV = {
    "pad1-stride2": ((3, 3), 1, 2, (1, 3, 3, 2), 2, "Tanh"),
    "same-tuple-stride": ((3, 2), "same", (2, 1), (2, 2, 3, 1), 2, None),
    "same-even-kernel-stride3": ((2, 1), "same", 3, (1, 3, 2, 2), 2, "Tanh"),
    "asym-stride-gt-kernel": ((2, 2), (0, 1, 1, 0), 3, (1, 3, 2, 2), 2, None),
}


@pytest.mark.parametrize(("kernel", "pad", "stride", "dilation", "x_shape", "out_ch", "act"),
                         **_ids(GRADCHECK_2D))
def test_conv2d_gradcheck(backend64, kernel, pad, stride, dilation, x_shape, out_ch, act):
    layer = Conv2D(out_ch, kernel, pad=pad, stride=stride, dilation=dilation, act_fn=act,
                   backend=backend64)
    X = backend64.rng.normal(x_shape)
    layer.forward(X)
    layer.parameters["b"] = backend64.rng.normal((out_ch,))
    gradcheck(layer, [X])


@pytest.mark.parametrize(("kernel", "pad", "stride", "dilation", "x_shape", "out_ch", "act"),
                         **_ids(GRADCHECK_1D))
def test_conv1d_gradcheck(backend64, kernel, pad, stride, dilation, x_shape, out_ch, act):
    layer = Conv1D(out_ch, kernel, pad=pad, stride=stride, dilation=dilation, act_fn=act,
                   backend=backend64)
    X = backend64.rng.normal(x_shape)
    layer.forward(X)
    layer.parameters["b"] = backend64.rng.normal((out_ch,))
    gradcheck(layer, [X])


@pytest.mark.parametrize(("kernel", "pad", "stride", "x_shape", "out_ch", "act"),
                         **_ids(GRADCHECK_DECONV))
def test_deconv2d_gradcheck(backend64, kernel, pad, stride, x_shape, out_ch, act):
    layer = Deconv2D(out_ch, kernel, pad=pad, stride=stride, act_fn=act, backend=backend64)
    X = backend64.rng.normal(x_shape)
    layer.forward(X)
    layer.parameters["b"] = backend64.rng.normal((out_ch,))
    gradcheck(layer, [X])


# ----------------------------------------------------------------------------- the layer API
LAYERS = {
    "Conv1D": (lambda be: Conv1D(3, 2, pad="causal", dilation=1, act_fn="ReLU", init="he_normal",
                                 optimizer="Adam(lr=0.01)", backend=be), (2, 6, 3)),
    "Conv2D": (lambda be: Conv2D(3, (2, 3), pad=(1, 0, 2, 1), stride=(2, 1), dilation=1,
                                 act_fn="Tanh", init="glorot_normal", optimizer="Adam(lr=0.01)",
                                 backend=be), (2, 5, 6, 2)),
    "Deconv2D": (lambda be: Deconv2D(3, (3, 2), pad="same", stride=2, act_fn="ReLU",
                                     optimizer="Adam(lr=0.01)", backend=be), (2, 3, 4, 2)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_same_seed_same_parameters_on_every_backend(backend, name):
    build, x_shape = LAYERS[name]
    reference = build(anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0))
    reference.forward(reference.backend.asarray(np.ones(x_shape)))
    layer = build(backend)
    Y = layer.forward(backend.asarray(np.ones(x_shape)))
    assert_close(Y, reference.forward(reference.backend.asarray(np.ones(x_shape))),
                 backend=backend)
    for key in ("W", "b"):
        assert_close(layer.parameters[key], reference.parameters[key], backend=backend, rtol=0,
                     atol=0)
        assert_close(layer.gradients[key], np.zeros(reference.parameters[key].shape),
                     backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_summary_round_trip(backend, name):
    build, x_shape = LAYERS[name]
    layer = build(backend)
    X = backend.rng.normal(x_shape)
    layer.forward(X)
    layer.backward(backend.rng.normal(tuple(layer.forward(X).shape)))
    layer.update()
    Y = layer.forward(X, retain_derived=False)
    summary = layer.summary()
    assert summary["layer"] == name
    assert isinstance(summary["parameters"]["W"], np.ndarray)
    hp = summary["hyperparameters"]
    assert hp["in_ch"] == x_shape[-1] and hp["out_ch"] == 3
    fresh = type(layer)(1, 1, backend=backend).set_params(summary)
    assert fresh._config() == layer._config()
    assert fresh.optimizer == layer.optimizer
    assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


def test_summary_from_json_lists(backend):
    """Hyperparameters that went through JSON (tuples become lists) load back."""
    layer = Conv2D(2, (2, 3), pad=(1, 0, 2, 1), stride=(2, 1), backend=backend)
    X = backend.rng.normal((1, 4, 5, 2))
    Y = layer.forward(X)
    summary = layer.summary()
    hp = {k: list(v) if isinstance(v, tuple) else v for k, v in summary["hyperparameters"].items()}
    fresh = Conv2D(1, 1, backend=backend).set_params({"parameters": summary["parameters"],
                                                      "hyperparameters": hp})
    assert fresh.kernel_shape == (2, 3) and fresh.pad == (1, 0, 2, 1) and fresh.stride == (2, 1)
    assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


# ------------------------------------------------------- numpy-ml's padding rule, shapes only
@pytest.mark.parametrize("dilation", [0, 1, 2])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_and_causal_keep_the_input_size(backend, stride, dilation):
    """The spec's rule: Conv1D/Conv2D "same" and Conv1D "causal" keep the input's size at any stride
    and dilation; odd and even sizes and kernels."""
    for n in (1, 5, 6, 7):
        for k in (1, 2, 3, 4):
            X1 = backend.asarray(np.ones((2, n, 3)))
            for pad in ("same", "causal"):
                layer = Conv1D(2, k, pad=pad, stride=stride, dilation=dilation, backend=backend)
                Y = layer.forward(X1)
                assert tuple(Y.shape) == (2, n, 2), (pad, n, k)
                assert tuple(layer.backward(Y).shape) == (2, n, 3)
            X2 = backend.asarray(np.ones((1, n, n + 2, 2)))
            layer = Conv2D(3, (k, 5 - k), pad="same", stride=(stride, 4 - stride), dilation=dilation,
                           backend=backend)
            Y = layer.forward(X2)
            assert tuple(Y.shape) == (1, n, n + 2, 3), (n, k)
            assert tuple(layer.backward(Y).shape) == (1, n, n + 2, 2)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_deconv2d_same_gives_stride_times_in_minus_one_plus_one(backend, stride):
    for n in (1, 2, 3, 4):
        for k in (1, 2, 3, 4):
            layer = Deconv2D(2, (k, 5 - k), pad="same", stride=(stride, 4 - stride), backend=backend)
            Y = layer.forward(backend.asarray(np.ones((1, n, n + 1, 3))))
            assert tuple(Y.shape) == (1, stride * (n - 1) + 1, (4 - stride) * n + 1, 2), (n, k)
            assert tuple(layer.backward(Y).shape) == (1, n, n + 1, 3)


@pytest.mark.parametrize(("kernel", "stride", "dilation"), [(3, 1, 1), (2, 2, 0), (3, 3, 1), (4, 2, 2)])
def test_conv1d_causal_never_looks_ahead(backend64, kernel, stride, dilation):
    """Output t depends on inputs 0..t only, at every stride (its gradient wrt. later inputs is 0)."""
    n = 9
    layer = Conv1D(2, kernel, pad="causal", stride=stride, dilation=dilation, backend=backend64)
    X = backend64.rng.normal((1, n, 2))
    Y = layer.forward(X)
    assert tuple(Y.shape) == (1, n, 2)
    for t in range(n):
        layer.forward(X)
        dY = np.zeros((1, n, 2))
        dY[0, t, :] = 1.0
        dX = anyml.to_numpy(layer.backward(backend64.asarray(dY)))
        assert not np.any(dX[0, t + 1:, :]), t
    layer.flush_gradients()


def test_conv1d_causal_output_ignores_the_future(backend64):
    layer = Conv1D(2, 3, pad="causal", dilation=1, backend=backend64)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, 8, 2))
    Y = anyml.to_numpy(layer.forward(backend64.asarray(X)))
    X2 = X.copy()
    X2[:, 5:] = rng.standard_normal((1, 3, 2))
    Y2 = anyml.to_numpy(layer.forward(backend64.asarray(X2)))
    np.testing.assert_array_equal(Y2[:, :5], Y[:, :5])
    assert not np.allclose(Y2[:, 5:], Y[:, 5:])


def test_gradients_accumulate_over_two_forwards(backend64):
    layer = Conv2D(2, (2, 2), stride=2, backend=backend64)
    X1, X2 = backend64.rng.normal((1, 4, 4, 1)), backend64.rng.normal((2, 4, 4, 1))
    dY1, dY2 = backend64.rng.normal((1, 2, 2, 2)), backend64.rng.normal((2, 2, 2, 2))
    layer.forward(X1)
    layer.forward(X2)
    layer.backward(dY2)
    dW2 = anyml.to_numpy(layer.gradients["W"]).copy()
    layer.backward(dY1)
    dW_both = anyml.to_numpy(layer.gradients["W"])
    layer.flush_gradients()
    layer.forward(X1)
    layer.backward(dY1)
    assert_close(layer.gradients["W"], dW_both - dW2, backend=backend64)


@pytest.mark.parametrize("flat", [False, True], ids=["strided", "flat"])
@pytest.mark.parametrize("name", ["Conv2D", "Conv1D", "Deconv2D"])
def test_workspaces_keep_interleaved_forwards_apart(backend64, monkeypatch, flat, name):
    """Two retained forwards of the same shape (and an unretained one between them) each keep their
    own scratch memory: the backward passes, newest first, match separate forward/backward pairs."""
    monkeypatch.setattr(conv, "FLAT_MAX_WASTE", 100.0 if flat else 0.0)
    monkeypatch.setattr(conv, "chunk_bytes", lambda like: 1)  # one example per chunk
    build = {"Conv2D": lambda: Conv2D(3, (3, 3), pad=1, backend=backend64),
             "Conv1D": lambda: Conv1D(3, 3, pad="same", backend=backend64),
             "Deconv2D": lambda: Deconv2D(3, (3, 3), stride=2, backend=backend64)}[name]
    shape = (3, 5, 4, 2) if name != "Conv1D" else (3, 7, 2)
    rng = backend64.rng
    layer = build()
    X1, X2, X3 = (rng.normal(shape) for _ in range(3))
    Y1 = layer.forward(X1)
    Y2 = layer.forward(X2)
    layer.forward(X3, retain_derived=False)
    dY1, dY2 = rng.normal(tuple(Y1.shape)), rng.normal(tuple(Y2.shape))
    dX2 = layer.backward(dY2)
    dX1 = layer.backward(dY1)
    both = {k: anyml.to_numpy(v).copy() for k, v in layer.gradients.items()}
    expected = {}
    for X, dY, dX, Y in ((X1, dY1, dX1, Y1), (X2, dY2, dX2, Y2)):
        layer.flush_gradients()
        assert_close(layer.forward(X), anyml.to_numpy(Y), backend=backend64)
        assert_close(layer.backward(dY), anyml.to_numpy(dX), backend=backend64)
        for k, v in layer.gradients.items():
            expected[k] = expected.get(k, 0) + anyml.to_numpy(v)
    for k, v in both.items():
        assert_close(v, expected[k], err_msg=k)


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("build", "match"), [
    (lambda: Conv2D(0, 3), r"Conv2D: out_ch must be a positive integer, got 0"),
    (lambda: Conv2D(2, (0, 3)), r"Conv2D: kernel_shape must be a positive integer"),
    (lambda: Conv2D(2, (2, 2, 2)), r"Conv2D: kernel_shape must be"),
    (lambda: Conv2D(2, 3, stride=0), r"Conv2D: stride must be a positive integer"),
    (lambda: Conv2D(2, 3, dilation=-1), r"Conv2D: dilation must be a non-negative integer"),
    (lambda: Conv2D(2, 3, pad=-1), r"Conv2D: pad values must be non-negative"),
    (lambda: Conv2D(2, 3, pad="valid"), r"Conv2D: unknown pad 'valid'"),
    (lambda: Conv2D(2, 3, pad="causal"), r"Conv2D: unknown pad 'causal'"),
    (lambda: Conv2D(2, 3, pad=(1, 2, 3)), r"Conv2D: pad must be"),
    (lambda: Conv2D(2, 3, act_fn="relux"), r"Conv2D: unknown activation 'relux'"),
    (lambda: Conv2D(2, 3, init="nope"), r"Conv2D: unknown initializer 'nope'"),
    (lambda: Conv1D(2, 0), r"Conv1D: kernel_width must be a positive integer"),
    (lambda: Conv1D(2, 3, pad=(1, 2, 3, 4)), r"Conv1D: pad must be"),
    (lambda: Conv1D(2, 3, pad="full"), r"Conv1D: unknown pad 'full'"),
    (lambda: Conv1D(2, 3, stride=(1, 2)), r"Conv1D: stride must be a positive integer"),
    (lambda: Conv1D(2, 3, dilation=1.5), r"Conv1D: dilation must be a non-negative integer"),
    (lambda: Deconv2D(2, 3, stride=-1), r"Deconv2D: stride must be a positive integer"),
    (lambda: Deconv2D(2, 3, act_fn="sigmod"), r"Deconv2D: unknown activation 'sigmod'"),
])
def test_bad_constructor_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(("layer", "x_shape", "match"), [
    (lambda be: Conv2D(2, 3, backend=be), (2, 5, 5),
     r"Conv2D: expected X of shape \(n_ex, in_rows, in_cols, in_ch\), got \(2, 5, 5\)"),
    (lambda be: Conv2D(2, 5, pad=(0, 1), backend=be), (1, 4, 6, 1),
     r"Conv2D: the kernel spans 5 rows \(with dilation\), more than the 4 rows"),
    (lambda be: Conv2D(2, 3, dilation=2, backend=be), (1, 6, 4, 1),
     r"Conv2D: the kernel spans 7 rows \(with dilation\)"),
    (lambda be: Conv1D(2, 3, backend=be), (2, 5, 5, 1),
     r"Conv1D: expected X of shape \(n_ex, l_in, in_ch\), got \(2, 5, 5, 1\)"),
    (lambda be: Conv1D(2, 4, dilation=1, pad=(1, 0), backend=be), (1, 5, 1),
     r"Conv1D: the kernel spans 7 cols"),
    (lambda be: Deconv2D(2, 3, backend=be), (3, 3, 2),
     r"Deconv2D: expected X of shape \(n_ex, in_rows, in_cols, in_ch\)"),
    (lambda be: Deconv2D(2, 2, pad=(2, 0), backend=be), (1, 2, 3, 1),
     r"Deconv2D: pad 2\+2 crops all 3 rows"),
])
def test_bad_input_shape(backend, layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer(backend).forward(backend.rng.normal(x_shape))


@pytest.mark.parametrize("cls", [Conv2D, Deconv2D])
def test_channel_count_is_fixed_by_the_first_forward(backend, cls):
    layer = cls(2, 2, backend=backend)
    layer.forward(backend.rng.normal((1, 4, 4, 3)))
    match = rf"{cls.__name__}: expected X of shape \(n_ex, in_rows, in_cols, 3\), got \(1, 4, 4, 2\)"
    with pytest.raises(ValueError, match=match):
        layer.forward(backend.rng.normal((1, 4, 4, 2)))


def test_conv1d_channel_count_is_fixed(backend):
    layer = Conv1D(2, 2, backend=backend)
    layer.forward(backend.rng.normal((1, 4, 3)))
    with pytest.raises(ValueError, match=r"Conv1D: expected X of shape \(n_ex, l_in, 3\)"):
        layer.forward(backend.rng.normal((1, 4, 1)))


def test_array_of_another_backend_is_refused(backend):
    if backend.name == "numpy":
        pytest.skip("a NumPy array is this backend's own")
    layer = Conv2D(2, 2, backend=backend)
    with pytest.raises(TypeError, match=r"Conv2D: expected X to be a .* array"):
        layer.forward(np.ones((1, 3, 3, 1), dtype=backend.dtype_name))


def test_wrong_dtype_and_backward_before_forward(backend):
    layer = Conv1D(2, 2, backend=backend)
    other = "float64" if backend.dtype_name == "float32" else "float32"
    X = anyml.make_backend(backend.name, device=backend.device, dtype=other).rng.normal((1, 4, 1))
    with pytest.raises(TypeError, match=rf"Conv1D: expected X of dtype {backend.dtype_name}"):
        layer.forward(X)
    with pytest.raises(RuntimeError, match="Conv1D: backward called with no retained"):
        layer.backward(backend.rng.normal((1, 3, 2)))


@pytest.mark.parametrize(("name", "kept"), [("numpy", 1), ("gpulike", 0)])
def test_idle_workspaces_are_kept_only_where_the_library_does_not_pool_memory(name, kept):
    """After a forward and its backward, a convolution keeps its scratch workspace for the next call
    on a CPU library, and none on a backend whose library pools device memory itself (CuPy, torch on
    CUDA; ``gpulike`` is CuPy's backend on the emulated device)."""
    be = anyml.make_backend(name, dtype="float32", seed=0)
    assert be.pools_memory is (kept == 0)
    layer = Conv2D(4, (3, 3), pad="same", act_fn="ReLU", backend=be)
    X = be.asarray(np.ones((2, 6, 6, 3)))
    Y = layer.forward(X)
    layer.backward(be.asarray(np.ones(tuple(Y.shape))))
    assert len(layer._workspaces._idle) == kept
    layer.to("numpy")
    assert layer._workspaces.size == 2
