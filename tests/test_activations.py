"""Activations: values and derivatives against PyTorch and finite differences; specs; stability."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import anyml
from anyml.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    SELU,
    Activation,
    Affine,
    Exponential,
    HardSigmoid,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SoftPlus,
    Tanh,
    calc_glorot_gain,
    get_activation,
)
from anyml.testing import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (activation, the same function written in torch)
CASES = [
    (Sigmoid(), torch.sigmoid),
    (ReLU(), F.relu),
    (LeakyReLU(), lambda t: F.leaky_relu(t, 0.3)),
    (LeakyReLU(alpha=0.05), lambda t: F.leaky_relu(t, 0.05)),
    (GELU(), lambda t: F.gelu(t, approximate="tanh")),
    (GELU(approximate=False), lambda t: F.gelu(t, approximate="none")),
    (Tanh(), torch.tanh),
    (Affine(), lambda t: 1.0 * t + 0.0),
    (Affine(slope=-2.5, intercept=0.75), lambda t: -2.5 * t + 0.75),
    (Identity(), lambda t: t * 1.0),
    (ELU(), F.elu),
    (ELU(alpha=0.4), lambda t: F.elu(t, 0.4)),
    (Exponential(), torch.exp),
    (SELU(), F.selu),
    (HardSigmoid(), lambda t: torch.clamp(0.2 * t + 0.5, 0.0, 1.0)),
    (SoftPlus(), lambda t: F.softplus(t, beta=1.0, threshold=50.0)),
]
IDS = [str(act) for act, _ in CASES]

# An even number of points symmetric about 0 misses 0 and the HardSigmoid kinks at +-2.5.
GRID = np.linspace(-6.0, 6.0, 120)


def _torch_reference(torch_fn, host: np.ndarray) -> tuple[np.ndarray, ...]:
    """f, f' and f'' in float64 by autograd, including double backward."""
    t = torch.tensor(host.astype(np.float64), requires_grad=True)
    y = torch_fn(t)
    (g,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    if g.requires_grad:
        (g2,) = torch.autograd.grad(g.sum(), t, allow_unused=True)
    else:
        g2 = None
    g2 = torch.zeros_like(t) if g2 is None else g2
    return tuple(a.detach().numpy() for a in (y, g, g2))


@pytest.mark.parametrize(("act", "torch_fn"), CASES, ids=IDS)
def test_matches_torch(backend: anyml.Backend, act: Activation, torch_fn) -> None:
    host = GRID.astype(backend.dtype_name)
    z = backend.from_host(host)
    want_f, want_g, want_g2 = _torch_reference(torch_fn, host)
    assert_close(act(z), want_f, backend=backend, err_msg=f"{act}.fn")
    assert_close(act.fn(z), want_f, backend=backend, err_msg=f"{act}.fn")
    assert_close(act.grad(z), want_g, backend=backend, err_msg=f"{act}.grad")
    assert_close(act.grad2(z), want_g2, backend=backend, err_msg=f"{act}.grad2")


@pytest.mark.parametrize(("act", "torch_fn"), CASES, ids=IDS)
def test_backward_is_dy_times_grad(backend: anyml.Backend, act: Activation, torch_fn) -> None:
    z = backend.from_host(GRID.reshape(8, 15))
    dy = backend.rng.normal((8, 15))
    assert_close(act.backward(z, dy), dy * act.grad(z), backend=backend, err_msg=str(act))


@pytest.mark.parametrize(("act", "torch_fn"), CASES, ids=IDS)
def test_derivatives_match_finite_differences(backend64: anyml.Backend, act: Activation,
                                              torch_fn) -> None:
    h = 1e-6
    z = backend64.from_host(GRID)
    zp, zm = backend64.from_host(GRID + h), backend64.from_host(GRID - h)
    fd1 = (backend64.to_host(act.fn(zp)) - backend64.to_host(act.fn(zm))) / (2 * h)
    fd2 = (backend64.to_host(act.grad(zp)) - backend64.to_host(act.grad(zm))) / (2 * h)
    assert_close(act.grad(z), fd1, rtol=1e-6, atol=1e-7, backend=backend64, err_msg=str(act))
    assert_close(act.grad2(z), fd2, rtol=1e-6, atol=1e-7, backend=backend64, err_msg=str(act))


@pytest.mark.parametrize(("act", "torch_fn"), CASES, ids=IDS)
def test_shape_is_kept(backend: anyml.Backend, act: Activation, torch_fn) -> None:
    z = backend.rng.normal((2, 3, 4))
    for out in (act(z), act.grad(z), act.grad2(z), act.backward(z, z)):
        assert tuple(out.shape) == (2, 3, 4)
        assert backend.owns(out)
        assert out.dtype == backend.dtype


@pytest.mark.parametrize(("act", "torch_fn"),
                         [c for c in CASES if not isinstance(c[0], Exponential)],
                         ids=[i for i, c in zip(IDS, CASES, strict=True)
                              if not isinstance(c[0], Exponential)])
def test_extreme_inputs_are_finite_and_silent(backend: anyml.Backend, act: Activation,
                                              torch_fn) -> None:
    # Exponential is left out: e^(1e4) is inf by definition.
    z = backend.from_host(np.array([-1e4, -100.0, 0.0, 100.0, 1e4]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [act(z), act.grad(z), act.grad2(z), act.backward(z, z)]
    for out in outs:
        assert backend.owns(out)
        assert out.dtype == backend.dtype
        assert np.isfinite(backend.to_host(out)).all(), str(act)


@pytest.mark.parametrize(("act", "at_minus", "at_plus"), [
    (Sigmoid(), 0.0, 1.0), (ReLU(), 0.0, 1e4), (SoftPlus(), 0.0, 1e4), (ELU(), -1.0, 1e4),
    (SELU(), -SELU.scale * SELU.alpha, SELU.scale * 1e4), (GELU(), 0.0, 1e4),
    (GELU(approximate=False), 0.0, 1e4), (HardSigmoid(), 0.0, 1.0), (Tanh(), -1.0, 1.0),
])
def test_extreme_input_values(backend: anyml.Backend, act: Activation, at_minus: float,
                              at_plus: float) -> None:
    z = backend.from_host(np.array([-1e4, 1e4]))
    assert_close(act(z), np.array([at_minus, at_plus]), backend=backend, err_msg=str(act))


ALL_OBJECTS = [act for act, _ in CASES]


def test_relu_passes_nan_and_reports_a_broken_gradient(backend: anyml.Backend) -> None:
    """NaN goes through f; an infinite gradient arriving at an inactive unit is not hidden as 0."""
    z = backend.asarray(np.array([-1.0, float("nan"), 2.0]))
    out = backend.to_host(ReLU().fn(z))
    assert out[0] == 0.0 and math.isnan(out[1]) and out[2] == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf * 0 on NumPy
        dz = backend.to_host(ReLU().backward(z, backend.asarray(np.array([math.inf, 1.0, 3.0]))))
    assert math.isnan(dz[0]) and dz[1] == 0.0 and dz[2] == 3.0


@pytest.mark.parametrize("act", ALL_OBJECTS, ids=IDS)
def test_string_round_trip(act: Activation) -> None:
    again = get_activation(str(act))
    assert again == act
    assert type(again) is type(act)
    assert str(again) == str(act)
    assert get_activation(act.hyperparameters) == act


def test_every_registered_class_is_covered() -> None:
    assert {type(a).__name__ for a in ALL_OBJECTS} == set(ACTIVATIONS.names)


@pytest.mark.parametrize(("text", "expected"), [
    ("relu", ReLU()), ("ReLU", ReLU()), ("leaky relu", LeakyReLU()), ("leaky_relu", LeakyReLU()),
    ("Leaky ReLU(alpha=0.1)", LeakyReLU(alpha=0.1)), ("linear", Identity()),
    ("Identity", Identity()),
    ("hard sigmoid", HardSigmoid()), ("hard_sigmoid", HardSigmoid()), ("softplus", SoftPlus()),
    ("SIGMOID", Sigmoid()), ("tanh", Tanh()), ("elu", ELU()), ("selu", SELU()), ("gelu", GELU()),
    ("exponential", Exponential()), ("affine(slope=2.0, intercept=1.0)", Affine(2.0, 1.0)),
    ("GELU(approximate=False)", GELU(approximate=False)),
])
def test_aliases(text: str, expected: Activation) -> None:
    assert get_activation(text) == expected


def test_str_forms() -> None:
    assert str(ReLU()) == "ReLU"
    assert str(LeakyReLU()) == "LeakyReLU(alpha=0.3)"
    assert str(Affine(2, 1)) == "Affine(slope=2.0, intercept=1.0)"
    assert str(GELU()) == "GELU(approximate=True)"


def test_get_activation_none_object_dict() -> None:
    assert get_activation(None) == Identity()
    act = ELU(alpha=0.2)
    assert get_activation(act) is act
    assert get_activation({"id": "ELU", "alpha": 0.2}) == act


def test_unknown_name_is_named() -> None:
    with pytest.raises(ValueError, match="'swishy'"):
        get_activation("swishy")


@pytest.mark.parametrize("bad", [
    lambda: LeakyReLU(alpha="0.1"), lambda: ELU(alpha=None), lambda: Affine(slope=True),
    lambda: GELU(approximate=1),
])
def test_bad_arguments(bad) -> None:
    with pytest.raises(TypeError, match="must be"):
        bad()


def test_bad_spec_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="ELU"):
        get_activation("ELU(beta=1.0)")
    with pytest.raises(TypeError):
        get_activation(3)


@pytest.mark.parametrize(("act", "gain"), [
    ("tanh", 5.0 / 3.0), ("relu", math.sqrt(2.0)), (LeakyReLU(alpha=0.5), math.sqrt(2.0 / 1.25)),
    ("sigmoid", 1.0), (None, 1.0), ("selu", 1.0),
])
def test_glorot_gain(act, gain: float) -> None:
    assert calc_glorot_gain(act) == pytest.approx(gain, rel=1e-15)


def test_identity_and_affine_backward_shortcuts(backend: anyml.Backend) -> None:
    z = backend.rng.normal((5,))
    dy = backend.rng.normal((5,))
    assert Identity().backward(z, dy) is dy
    assert Identity()(z) is z
    assert_close(Affine(slope=3.0).backward(z, dy), 3.0 * backend.to_host(dy), backend=backend)
