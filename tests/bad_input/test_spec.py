"""Spec strings from anywhere: bounded length and depth, one value per keyword, finite numbers; every
refusal a ValueError (never RecursionError or MemoryError), through every registry."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyml._spec import MAX_SPEC_DEPTH, MAX_SPEC_LENGTH, parse_spec
from anyml.activations import get_activation
from anyml.initializers import get_initializer
from anyml.losses import get_loss
from anyml.optimizers import get_optimizer
from anyml.schedulers import get_scheduler
from tests.bad_input._helpers import refused

HOSTILE = [
    "Adam(lr=" + "+".join(["1"] * 1000) + ")",
    "Adam(lr=" + "+".join(["1"] * 100) + ")",
    "Adam(lr=" + "-" * 1000 + "1)",
    "Adam(lr=" + "-" * 50_000 + "1)",
    "Adam(lr=" + "-" * 40 + "1)",
    "a" + ".b" * 2000,
    "Adam" + "(" * 300 + ")" * 300,
    "Adam(lr=" + "[" * 60 + "]" * 60 + ")",
    "Adam(lr=0.1, lr=0.2)",
    "Adam(lr=1e999)",
    "Adam(lr=-1e999)",
    "Adam(lr=(1, 2e400))",
    "Adam(lr=1e-3, lr_scheduler=ExponentialScheduler(decay=1e999))",
    "Adam(lr=float('nan'))",
    "Adam(lr=[1] * 10 ** 9)",
    "Adam(lr=__import__('os'))",
    "Adam(**{'lr': 1})",
    "Adam(0.1)",
    "x" * (MAX_SPEC_LENGTH + 1),
    "",
    "Adam(lr=",
    "\x00",
]

FAMILIES = [("optimizer", get_optimizer), ("activation", get_activation),
            ("initializer", get_initializer), ("scheduler", get_scheduler), ("loss", get_loss)]
#: what a message may name: the family, or the class whose argument is wrong
OWNERS = ("optimizer", "activation", "initializer", "scheduler", "loss", "Adam")


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize(("kind", "get"), FAMILIES, ids=[k for k, _ in FAMILIES])
def test_hostile_specs_refused_by_every_registry(kind, get, text):
    refused(OWNERS, get, text, types=(ValueError,))


@pytest.mark.parametrize("text", HOSTILE[:12], ids=range(12))
def test_parse_spec_refuses_with_value_error(text):
    refused("cannot parse", parse_spec, text, types=(ValueError,))


def test_bounds_are_generous_for_real_specs():
    text = ("Adam(lr=0.001, decay1=0.9, decay2=0.999, eps=1e-07, clip_norm=None, "
            "lr_scheduler=KingScheduler(initial_lr=0.01, patience=1000, decay=0.99))")
    assert parse_spec(text)[0] == "Adam"
    assert str(get_optimizer(text)).startswith("Adam(lr=0.001")
    nested = "f(x=" + "(" * (MAX_SPEC_DEPTH - 4) + "1," + ")" * (MAX_SPEC_DEPTH - 4) + ")"
    assert parse_spec(nested)[0] == "f"


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf")])
def test_dict_specs_refuse_non_finite_values(value):
    refused("Adam", get_optimizer, {"id": "Adam", "lr": value}, types=(ValueError,))
    refused("LeakyReLU", get_activation, {"id": "LeakyReLU", "alpha": value}, types=(ValueError,))


def test_not_a_string():
    refused("optimizer", get_optimizer, 3, types=(TypeError,))
    refused("spec", parse_spec, None, types=(TypeError,))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text_is_parsed_or_refused_with_value_error(text):
    for _kind, get in FAMILIES:
        with contextlib.suppress(ValueError, TypeError):
            get(text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="()[]{}-+~*,.=:'\"0123456789eE abcAdm_", max_size=1200))
def test_fuzz_operator_soup(text):
    with contextlib.suppress(ValueError):
        parse_spec(text)
