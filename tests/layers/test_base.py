"""What ``LayerBase`` gives every layer: here, numpy-ml's list form of ``backward``."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml import layers as L  # noqa: N812
from anyml.testing import assert_close
from anyml.wrappers import Dropout

# name -> (constructor, input shape(s)); every layer whose backward takes an upstream gradient
LAYERS = {
    "FullyConnected": (lambda be: L.FullyConnected(3, act_fn="Tanh", backend=be), (4, 5)),
    "SparseEvolution": (lambda be: L.SparseEvolution(3, act_fn="ReLU", backend=be), (4, 5)),
    "Conv1D": (lambda be: L.Conv1D(2, 3, pad="causal", stride=2, backend=be), (2, 7, 3)),
    "Conv2D": (lambda be: L.Conv2D(2, (3, 2), pad="same", stride=2, backend=be), (2, 5, 4, 3)),
    "Deconv2D": (lambda be: L.Deconv2D(2, (3, 3), pad=1, stride=2, backend=be), (2, 3, 3, 2)),
    "Pool2D": (lambda be: L.Pool2D((2, 2), stride=1, mode="average", backend=be), (2, 4, 4, 3)),
    "BatchNorm1D": (lambda be: L.BatchNorm1D(backend=be), (5, 3)),
    "BatchNorm2D": (lambda be: L.BatchNorm2D(backend=be), (3, 2, 2, 3)),
    "LayerNorm1D": (lambda be: L.LayerNorm1D(backend=be), (4, 5)),
    "LayerNorm2D": (lambda be: L.LayerNorm2D(backend=be), (2, 3, 3, 2)),
    "Softmax": (lambda be: L.Softmax(backend=be), (4, 5)),
    "Flatten": (lambda be: L.Flatten(backend=be), (2, 3, 2)),
    "Add": (lambda be: L.Add(act_fn="Tanh", backend=be), [(3, 4), (3, 4)]),
    "Multiply": (lambda be: L.Multiply(backend=be), [(3, 4), (3, 4)]),
    "RNN": (lambda be: L.RNN(3, backend=be), (2, 4, 3)),
    "LSTM": (lambda be: L.LSTM(3, backend=be), (2, 4, 3)),
    "RNNCell": (lambda be: L.RNNCell(3, backend=be), (2, 4)),
    "LSTMCell": (lambda be: L.LSTMCell(3, backend=be), (2, 4)),
    "Embedding": (lambda be: L.Embedding(3, vocab_size=7, backend=be), "ids"),
    "Embedding(pool)": (lambda be: L.Embedding(3, vocab_size=7, pool="mean", backend=be), "ids"),
    "DotProductAttention": (lambda be: L.DotProductAttention(backend=be), "qkv"),
    "Dropout(FullyConnected)": (lambda be: Dropout(L.FullyConnected(3, backend=be), p=0.3), (4, 5)),
}


def _inputs(be, spec, rng):
    if spec == "ids":
        return (be.asarray(rng.integers(0, 7, size=(3, 4)), dtype="int64"),)
    if spec == "qkv":
        return tuple(be.asarray(rng.standard_normal(s)) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 2)))
    if isinstance(spec, list):
        return ([be.asarray(rng.standard_normal(s)) for s in spec],)
    return (be.asarray(rng.standard_normal(spec)),)


def _output(out):
    return out[0] if isinstance(out, tuple) and len(out) == 2 else out  # LSTMCell: (At, Ct)


def _host(value):
    """Nested host copies of what backward returned (arrays, lists, tuples or None)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_host(v) for v in value]
    return anyml.to_numpy(value).copy()


def _run(backend64, name, dLdy_form):
    """Two retained passes of the same layer, backpropagated as ``dLdy_form`` says."""
    make, spec = LAYERS[name]
    results = []
    for form in ("separate", dLdy_form):
        be = anyml.make_backend(backend64.name, device=backend64.device, dtype="float64", seed=3)
        layer = make(be)
        rng = np.random.default_rng(5)
        passes = [_inputs(be, spec, rng) for _ in range(2)]
        outs = [_output(layer.forward(*p)) for p in passes]
        dYs = [be.asarray(rng.standard_normal(tuple(Y.shape))) for Y in outs]
        if dLdy_form == "zero-literal":
            dYs[0] = be.xp.zeros_like(dYs[0])
        if form == "separate":
            later = layer.backward(dYs[1])
            grads = [layer.backward(dYs[0]), later]
        else:
            grads = layer.backward([0, dYs[1]] if form == "zero-literal" else dYs)
        base = getattr(layer, "base_layer", layer)
        results.append((_host(grads), {k: _host(v) for k, v in base.gradients.items()}, layer))
    return results


def _assert_nested_close(got, want, backend):
    if want is None:
        assert got is None
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_nested_close(g, w, backend)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["list", "zero-literal"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_list_form_equals_one_call_per_pass(backend64, name, form):
    """``backward([dY0, dY1])`` returns ``[dX0, dX1]`` and accumulates what two calls would; a literal
    ``0`` is a zero gradient (numpy-ml's WGAN-GP passes one)."""
    (separate, grads_sep, _), (listed, grads_list, layer) = _run(backend64, name, form)
    if name == "DotProductAttention":  # the list form gives (dQs, dKs, dVs)
        separate = [list(t) for t in zip(*separate, strict=True)]
    assert isinstance(listed, list) and len(listed) == (3 if name == "DotProductAttention" else 2)
    _assert_nested_close(listed, separate, backend64)
    assert set(grads_list) == set(grads_sep)
    for key, value in grads_sep.items():
        np.testing.assert_allclose(grads_list[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    assert getattr(layer, "base_layer", layer).X == []  # both passes consumed


def test_list_form_is_checked_before_any_pass_is_consumed(backend):
    layer = L.FullyConnected(3, backend=backend)
    X = backend.rng.normal((4, 2))
    Y0, Y1 = layer.forward(X), layer.forward(X)
    with pytest.raises(ValueError, match=r"FullyConnected: backward got a list of 1 gradient\(s\); "
                                         r"the list form takes one per retained forward pass"):
        layer.backward([Y0])
    with pytest.raises(ValueError, match=r"FullyConnected: expected dLdy\[0\] of shape \(4, 3\)"):
        layer.backward([Y0[:2, ...], Y1])
    if backend.name != "numpy":
        with pytest.raises(TypeError, match=r"FullyConnected: expected dLdy\[1\] to be a"):
            layer.backward([Y0, anyml.to_numpy(Y1)])
    assert len(layer.X) == 2
    dX = layer.backward(dLdy=[Y0, Y1])  # by keyword too
    assert len(dX) == 2 and layer.X == []
    with pytest.raises(RuntimeError, match="FullyConnected: backward called with no retained"):
        layer.backward([Y0])


def test_single_array_form_unchanged(backend64):
    layer = L.FullyConnected(3, backend=backend64)
    X = backend64.rng.normal((4, 2))
    Y = layer.forward(X)
    dX = layer.backward(Y)
    assert not isinstance(dX, list)
    assert_close(dX, Y @ layer.parameters["W"].T, backend=backend64)


# ------------------------------------------------------------------ numpy-ml's objects
class _NumpyMLReLU:
    """Stands in for numpy-ml's activation objects, which print their spec."""

    def __str__(self) -> str:
        return "ReLU"


class _NumpyMLLeakyReLU:
    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha

    def __str__(self) -> str:
        return f"Leaky ReLU(alpha={self.alpha})"


class _NumpyMLAdam:
    def __init__(self, lr: float = 0.001) -> None:
        self.lr = lr

    def __str__(self) -> str:
        return (f"Adam(lr={self.lr}, decay1=0.9, decay2=0.999, eps=1e-07, clip_norm=None, "
                f"lr_scheduler=ExponentialScheduler(initial_lr={self.lr}, stage_length=500, "
                f"staircase=False, decay=0.1))")


class _Unrelated:
    def __str__(self) -> str:
        return "Adam(lr=0.1)"  # a spec, but of an optimizer: not an activation


OBJECT_LAYERS = {
    "FullyConnected": lambda act, opt: L.FullyConnected(2, act_fn=act, optimizer=opt),
    "Conv2D": lambda act, opt: L.Conv2D(2, 3, act_fn=act, optimizer=opt),
    "LSTM": lambda act, opt: L.LSTM(2, act_fn=act, gate_fn=act, optimizer=opt),
    "RNNCell": lambda act, opt: L.RNNCell(2, act_fn=act, optimizer=opt),
    "Add": lambda act, opt: L.Add(act_fn=act, optimizer=opt),
    "SparseEvolution": lambda act, opt: L.SparseEvolution(2, act_fn=act, optimizer=opt),
}


@pytest.mark.parametrize("name", list(OBJECT_LAYERS))
def test_numpy_ml_style_objects_are_accepted_through_their_spec(name):
    layer = OBJECT_LAYERS[name](_NumpyMLLeakyReLU(0.2), _NumpyMLAdam(0.01))
    assert str(layer.act_fn) == "LeakyReLU(alpha=0.2)"
    hp = layer.optimizer.hyperparameters
    assert (hp["id"], hp["lr"]) == ("Adam", 0.01)
    assert str(layer.optimizer.lr_scheduler).startswith("ExponentialScheduler(initial_lr=0.01")
    assert str(OBJECT_LAYERS[name](_NumpyMLReLU(), None).act_fn) == "ReLU"
    layer.set_params({"act_fn": _NumpyMLReLU(), "optimizer": _NumpyMLAdam(0.5)})
    assert str(layer.act_fn) == "ReLU" and layer.optimizer.hyperparameters["lr"] == 0.5


@pytest.mark.parametrize("name", list(OBJECT_LAYERS))
@pytest.mark.parametrize("bad", [object(), _Unrelated(), 3, np.ones(3), L.FullyConnected])
def test_unrelated_objects_are_a_type_error(name, bad):
    with pytest.raises(TypeError, match="expected a(n)? activation as None, a string"):
        OBJECT_LAYERS[name](bad, None)
    bad_optimizer = _NumpyMLReLU() if isinstance(bad, _Unrelated) else bad  # "ReLU": no optimizer
    with pytest.raises(TypeError, match="expected a(n)? optimizer as None, a string"):
        OBJECT_LAYERS[name](None, bad_optimizer)


@pytest.mark.parametrize(("layer", "shape"), [
    (lambda be: L.Deconv2D(2, (2, 2), backend=be), (1, 2, 2, 1)),
    (lambda be: L.Pool2D((2, 2), backend=be), (1, 3, 3, 1)),
    (lambda be: L.Add(backend=be), None),
    (lambda be: L.FullyConnected(2, backend=be), (3, 2)),
])
def test_gradient_by_keyword_in_either_spelling(backend, layer, shape):
    """The spec names the gradient ``dLdY`` (Deconv2D, Pool2D, Add) or ``dLdy`` (most others)."""
    lay = layer(backend)
    X = [backend.rng.normal((2, 3))] * 2 if shape is None else backend.rng.normal(shape)
    for name in ("dLdy", "dLdY"):
        Y = lay.forward(X)
        dX = lay.backward(**{name: Y})
        assert (len(dX) == 2) if shape is None else tuple(dX.shape) == shape


def test_list_form_through_a_stack_as_numpy_ml_wgan_gp_calls_it(backend64):
    """numpy-ml's WGAN-GP scores real, fake and interpolated batches with one critic, then calls
    ``backward([dY_real, dY_fake, 0])`` on each layer, last to first: the lists pass through the
    stack and the gradients are those of the two scored batches."""
    def critic(be):
        return [L.FullyConnected(4, act_fn="ReLU", backend=be), L.FullyConnected(1, backend=be)]

    rng = np.random.default_rng(7)
    batches = [backend64.asarray(rng.standard_normal((3, 2))) for _ in range(3)]
    dYs = [backend64.asarray(rng.standard_normal((3, 1))) for _ in range(2)]
    layers = critic(anyml.make_backend(backend64.name, device=backend64.device, dtype="float64",
                                       seed=1))
    for X in batches:
        for layer in layers:
            X = layer.forward(X)
    grads = [dYs[0], dYs[1], 0]
    for layer in reversed(layers):
        grads = layer.backward(grads)
    assert len(grads) == 3 and not np.any(anyml.to_numpy(grads[2]))

    reference = critic(anyml.make_backend(backend64.name, device=backend64.device, dtype="float64",
                                          seed=1))
    for X, dY in zip(batches[:2], dYs, strict=True):
        for layer in reference:
            X = layer.forward(X)
        for layer in reversed(reference):
            dY = layer.backward(dY)
    for ours, ref in zip(layers, reference, strict=True):
        for name, value in ref.gradients.items():
            assert_close(ours.gradients[name], value, backend=backend64, err_msg=name)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
def test_all_true_folds_flags(backend, n):
    from anyml.layers.base import all_true

    xp = backend.xp
    with backend.activate():
        flags = [xp.asarray(True, device=backend.device) for _ in range(n)]
        if n == 0:
            assert all_true(xp, flags) is None
            return
        assert bool(all_true(xp, flags))
        flags[n // 2] = xp.asarray(False, device=backend.device)
        assert not bool(all_true(xp, flags))
