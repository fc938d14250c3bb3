"""Pool2D: against PyTorch float64 autograd, finite differences, and the layer API."""

from __future__ import annotations

import math

import numpy as np
import pytest

import anyml
from anyml.layers.pool import Pool2D
from anyml.testing import assert_close, gradcheck

# (kernel, stride, pad, x_shape)
CASES = {
    "2x2-stride2-disjoint": ((2, 2), 2, 0, (2, 8, 6, 3)),
    "3x3-stride1-overlap": ((3, 3), 1, 0, (2, 5, 6, 2)),
    "3x3-stride2-pad1-odd": ((3, 3), 2, 1, (1, 7, 5, 2)),
    "nonsquare-tuple-stride-asym-pad": ((2, 3), (2, 3), (1, 0, 2, 1), (2, 5, 7, 2)),
    "pair-pad": ((3, 3), 2, (1, 2), (2, 6, 5, 1)),
    "same-stride2": ((3, 2), 2, "same", (2, 5, 7, 2)),
    "stride-gt-kernel": ((2, 2), 3, 0, (1, 8, 7, 2)),
}
MODES = ["max", "average"]


def _pads(pad, x_shape, kernel, stride):
    sr, sc = (stride, stride) if isinstance(stride, int) else stride
    if pad == "same":
        out = []
        for n, k, s in ((x_shape[1], kernel[0], sr), (x_shape[2], kernel[1], sc)):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(pad, int):
        return (pad,) * 4
    return (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad


def _torch_pool(torch, X, kernel, stride, pads, mode):
    F = torch.nn.functional
    top, bottom, left, right = pads
    Xc = F.pad(X.permute(0, 3, 1, 2), (left, right, top, bottom),
               value=-math.inf if mode == "max" else 0.0)
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    return pool(Xc, kernel, stride).permute(0, 2, 3, 1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kernel", "stride", "pad", "x_shape"), list(CASES.values()), ids=list(CASES))
def test_matches_torch(backend, kernel, stride, pad, x_shape, mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X = rng.standard_normal(x_shape).astype(backend.dtype_name)
    layer = Pool2D(kernel, stride=stride, pad=pad, mode=mode, backend=backend)
    Y = layer.forward(backend.asarray(X))
    dY = rng.standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    dX = layer.backward(backend.asarray(dY))

    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Yt = _torch_pool(torch, Xt, kernel, stride, _pads(pad, x_shape, kernel, stride), mode)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend, err_msg="Y")
    assert_close(dX, Xt.grad.numpy(), backend=backend, err_msg="dX")


def test_average_with_symmetric_pad_is_count_include_pad(backend64):
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(1).standard_normal((2, 5, 6, 3))
    Y = Pool2D(3, stride=2, pad=1, mode="average", backend=backend64).forward(backend64.asarray(X))
    Yt = torch.nn.functional.avg_pool2d(torch.tensor(X).permute(0, 3, 1, 2), 3, 2, padding=1,
                                        count_include_pad=True)
    assert_close(Y, Yt.permute(0, 2, 3, 1).numpy(), backend=backend64)


def test_max_ties_go_to_the_first_maximum_like_torch(backend):
    torch = pytest.importorskip("torch")
    X = np.zeros((1, 4, 5, 2), dtype=backend.dtype_name)
    X[0, 1:3, 1:3, 0] = 1.0  # a plateau shared by overlapping windows
    layer = Pool2D(3, stride=1, pad=1, backend=backend)
    Y = layer.forward(backend.asarray(X))
    dY = np.random.default_rng(2).standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    dX = layer.backward(backend.asarray(dY))
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Yt = torch.nn.functional.max_pool2d(Xt.permute(0, 3, 1, 2), 3, 1, padding=1)
    Yt.permute(0, 2, 3, 1).backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(dX, Xt.grad.numpy(), backend=backend)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kernel", "stride", "pad", "x_shape"), [
    ((2, 2), 2, 0, (1, 4, 4, 2)),
    ((3, 2), (2, 1), (1, 0, 1, 1), (2, 5, 4, 1)),
    ((3, 3), 2, "same", (1, 5, 6, 2)),
])
def test_gradcheck(backend64, kernel, stride, pad, x_shape, mode):
    layer = Pool2D(kernel, stride=stride, pad=pad, mode=mode, backend=backend64)
    gradcheck(layer, [backend64.rng.normal(x_shape)])


def test_float32_stays_float32_and_on_device(make_backend_for):
    backend = make_backend_for("float32")
    layer = Pool2D((2, 2), stride=2, pad="same", backend=backend)
    X = backend.rng.normal((2, 5, 5, 3))
    Y = layer.forward(X)
    dX = layer.backward(backend.rng.normal(tuple(Y.shape)))
    assert tuple(Y.shape) == (2, 3, 3, 3) and tuple(dX.shape) == (2, 5, 5, 3)
    for a in (Y, dX):
        assert backend.owns(a) and a.dtype == backend.xp.float32


@pytest.mark.parametrize("mode", MODES)
def test_summary_round_trip(backend, mode):
    layer = Pool2D((3, 2), stride=(2, 1), pad=(1, 0, 1, 1), mode=mode, backend=backend)
    X = backend.rng.normal((2, 5, 4, 3))
    Y = layer.forward(X)
    summary = layer.summary()
    assert summary["layer"] == "Pool2D" and summary["parameters"] == {}
    hp = summary["hyperparameters"]
    assert hp["in_ch"] == hp["out_ch"] == 3 and hp["mode"] == mode
    json_like = {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()}
    fresh = Pool2D(1, backend=backend).set_params({"hyperparameters": json_like})
    assert fresh._config() == layer._config()
    assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


def test_backward_accumulates_nothing_and_pops_in_order(backend64):
    layer = Pool2D(2, stride=2, backend=backend64)
    X1, X2 = backend64.rng.normal((1, 4, 4, 1)), backend64.rng.normal((2, 2, 2, 1))
    layer.forward(X1)
    layer.forward(X2)
    assert tuple(layer.backward(backend64.rng.normal((2, 1, 1, 1))).shape) == (2, 2, 2, 1)
    assert tuple(layer.backward(backend64.rng.normal((1, 2, 2, 1))).shape) == (1, 4, 4, 1)
    assert layer.gradients == {}
    with pytest.raises(RuntimeError, match="Pool2D: backward called with no retained"):
        layer.backward(backend64.rng.normal((1, 2, 2, 1)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kernel_shape": 0}, r"Pool2D: kernel_shape must be a positive integer"),
    ({"kernel_shape": (2, 2), "stride": 0}, r"Pool2D: stride must be a positive integer"),
    ({"kernel_shape": 2, "pad": -1}, r"Pool2D: pad values must be non-negative"),
    ({"kernel_shape": 2, "pad": "causal"}, r"Pool2D: unknown pad 'causal'"),
    ({"kernel_shape": 2, "mode": "min"}, r"Pool2D: unknown mode 'min'"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Pool2D(**kwargs)


@pytest.mark.parametrize(("layer", "x_shape", "match"), [
    (lambda be: Pool2D(2, backend=be), (4, 4, 2),
     r"Pool2D: expected X of shape \(n_ex, in_rows, in_cols, in_ch\), got \(4, 4, 2\)"),
    (lambda be: Pool2D(3, backend=be), (1, 2, 4, 1), r"Pool2D: the kernel spans 3 rows"),
    (lambda be: Pool2D(2, pad=(2, 0), backend=be), (1, 4, 4, 1),
     r"Pool2D: the top pad \(2\) must be smaller than the kernel \(2\)"),
])
def test_bad_input(backend, layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer(backend).forward(backend.rng.normal(x_shape))


def test_channel_count_is_fixed_and_arrays_checked(backend):
    layer = Pool2D(2, backend=backend)
    layer.forward(backend.rng.normal((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"Pool2D: expected X of shape \(n_ex, in_rows, in_cols, 3\)"):
        layer.forward(backend.rng.normal((1, 4, 4, 2)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match=r"Pool2D: expected X to be a"):
            layer.forward(np.ones((1, 4, 4, 3), dtype=backend.dtype_name))
    other = anyml.make_backend(backend.name, device=backend.device,
                               dtype="float64" if backend.dtype_name == "float32" else "float32")
    with pytest.raises(TypeError, match=r"Pool2D: expected X of dtype"):
        layer.forward(other.rng.normal((1, 4, 4, 3)))


def test_numpy_ml_summary_with_act_fn_none_loads(backend):
    from anyml.layers.pool import Pool2D as _Pool2D

    summary = {"layer": "Pool2D", "parameters": {},
               "hyperparameters": {"layer": "Pool2D", "act_fn": None, "pad": 0, "mode": "average",
                                   "in_ch": None, "out_ch": None, "stride": 2, "kernel_shape": (2, 2)}}
    layer = _Pool2D((3, 3), backend=backend).set_params(summary)
    assert layer.mode == "average"
    with pytest.raises(ValueError, match="Pool2D has no activation"):
        _Pool2D((2, 2), backend=backend).set_params({"act_fn": "ReLU"})
