"""Initializers: fans, bounds, spreads, truncation, reproducibility and specs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anyml.activations import LeakyReLU
from anyml.initializers import (
    INITIALIZERS,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Initializer,
    StdNormal,
    TruncatedNormal,
    calc_fan,
    get_initializer,
    truncated_normal,
)

# The standard deviation of N(0, 1) conditioned on |x| < 2.
TRUNC_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(math.sqrt(2)))

SHAPES = [(300, 200), (7, 40, 30), (5, 3, 20, 16), (5000,)]


@pytest.mark.parametrize(("shape", "fans"), [
    ((7,), (7, 7)), ((3, 5), (3, 5)), ((4, 3, 5), (12, 20)), ((2, 3, 4, 5), (24, 30)),
    ((2, 2, 2, 3, 5), (24, 40)),
])
def test_calc_fan(shape, fans) -> None:
    assert calc_fan(shape) == fans


@pytest.mark.parametrize("bad", [(), (0, 3), (3, -1), (2.5, 3), (True, 3)])
def test_bad_shapes(bad) -> None:
    with pytest.raises(ValueError, match="shape"):
        calc_fan(bad)
    with pytest.raises(ValueError, match="shape"):
        GlorotUniform()(bad, np.random.default_rng(0))


def _expected(init: Initializer, shape) -> tuple[str, float, float]:
    """(kind, bound or truncation half-width, expected sample std)."""
    fan_in, fan_out = calc_fan(shape)
    if isinstance(init, GlorotUniform):
        b = init.gain * math.sqrt(6.0 / (fan_in + fan_out))
        return "uniform", b, b / math.sqrt(3.0)
    if isinstance(init, HeUniform):
        b = math.sqrt(6.0 / fan_in)
        return "uniform", b, b / math.sqrt(3.0)
    if isinstance(init, GlorotNormal):
        s = init.gain * math.sqrt(2.0 / (fan_in + fan_out))
    elif isinstance(init, HeNormal):
        s = math.sqrt(2.0 / fan_in)
    elif isinstance(init, TruncatedNormal):
        s = init.std
    else:
        return "normal", math.inf, 1.0
    return "truncated", 2.0 * s, TRUNC_STD * s


INITS = [GlorotUniform(), GlorotUniform(gain=5 / 3), GlorotNormal(), GlorotNormal(gain=2.0),
         HeUniform(), HeNormal(), TruncatedNormal(), TruncatedNormal(mean=0.5, std=0.02),
         StdNormal()]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("init", INITS, ids=str)
def test_shape_bounds_and_spread(init: Initializer, shape) -> None:
    w = init(shape, np.random.default_rng(1234))
    assert isinstance(w, np.ndarray)
    assert w.shape == shape
    assert w.dtype == np.float64
    kind, half_width, std = _expected(init, shape)
    mean = init.mean if isinstance(init, TruncatedNormal) else 0.0
    assert np.all(np.abs(w - mean) < half_width) if kind != "normal" else np.isfinite(w).all()
    # Standard error of a sample std is about std / sqrt(2n); allow 6 of them.
    tol = 6.0 * std / math.sqrt(2.0 * w.size)
    assert abs(w.std() - std) < tol
    assert abs(w.mean() - mean) < 6.0 * std / math.sqrt(w.size)


def test_truncation_redraws_tails() -> None:
    rng = np.random.default_rng(0)
    w = truncated_normal(1.0, 0.5, (100_000,), rng)
    assert w.min() > 0.0
    assert w.max() < 2.0
    # Without redrawing the ends, ~4.6% would lie beyond; redrawing fills the middle instead.
    assert abs(w.std() - TRUNC_STD * 0.5) < 6 * 0.5 / math.sqrt(2e5)


@pytest.mark.parametrize("init", INITS, ids=str)
def test_same_seed_same_weights(init: Initializer) -> None:
    a = init((20, 30), np.random.default_rng(7))
    b = init((20, 30), np.random.default_rng(7))
    c = init((20, 30), np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("init", INITS, ids=str)
def test_string_round_trip(init: Initializer) -> None:
    assert get_initializer(str(init)) == init
    assert get_initializer(init.hyperparameters) == init
    assert get_initializer(init) is init


def test_every_registered_class_is_covered() -> None:
    assert {type(i).__name__ for i in INITS} == set(INITIALIZERS.names)


@pytest.mark.parametrize(("name", "cls"), [
    ("glorot_uniform", GlorotUniform), ("glorot_normal", GlorotNormal), ("he_uniform", HeUniform),
    ("he_normal", HeNormal), ("trunc_normal", TruncatedNormal), ("std_normal", StdNormal),
    ("GlorotUniform", GlorotUniform), ("TRUNCATEDNORMAL", TruncatedNormal),
])
def test_aliases(name: str, cls: type) -> None:
    assert type(get_initializer(name)) is cls


def test_default_and_gain_from_activation() -> None:
    assert get_initializer() == GlorotUniform(gain=1.0)
    assert get_initializer(None, act_fn="relu") == GlorotUniform(gain=math.sqrt(2.0))
    assert get_initializer("glorot_normal", act_fn="tanh") == GlorotNormal(gain=5.0 / 3.0)
    leaky = LeakyReLU(alpha=0.2)
    assert get_initializer("glorot_uniform", act_fn=leaky).gain == pytest.approx(
        math.sqrt(2.0 / 1.04), rel=1e-15)
    assert get_initializer({"id": "GlorotUniform"}, act_fn="relu").gain == math.sqrt(2.0)
    # An explicit gain, an object, or another family is left alone.
    assert get_initializer("GlorotUniform(gain=3.0)", act_fn="relu") == GlorotUniform(gain=3.0)
    obj = GlorotNormal(gain=0.5)
    assert get_initializer(obj, act_fn="relu") is obj
    assert get_initializer("he_normal", act_fn="tanh") == HeNormal()


def test_unknown_name_is_named() -> None:
    with pytest.raises(ValueError, match="'orthogonal_ish'"):
        get_initializer("orthogonal_ish")


@pytest.mark.parametrize("bad", [
    lambda: GlorotUniform(gain=0.0), lambda: GlorotNormal(gain=-1.0), lambda: TruncatedNormal(std=0),
    lambda: TruncatedNormal(mean="a"), lambda: get_initializer("TruncatedNormal(std=-2.0)"),
])
def test_bad_arguments(bad) -> None:
    with pytest.raises(ValueError, match="must be"):
        bad()


def test_bad_rng_and_spec_types() -> None:
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        StdNormal()((2, 2), 0)
    with pytest.raises(TypeError):
        get_initializer(1.5)
    with pytest.raises(ValueError, match="id"):
        get_initializer({"gain": 1.0})
    with pytest.raises(ValueError, match="HeUniform"):
        get_initializer("HeUniform(gain=2.0)")
