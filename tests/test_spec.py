"""String specifications: safe parsing and formatting."""

from __future__ import annotations

import pytest

from anyml._spec import format_spec, parse_spec


@pytest.mark.parametrize(("text", "expected"), [
    ("ReLU", ("ReLU", {})),
    ("LeakyReLU(alpha=0.2)", ("LeakyReLU", {"alpha": 0.2})),
    ("  SGD(lr=0.1, clip_norm=None, nesterov=False) ", ("SGD", {"lr": 0.1, "clip_norm": None,
                                                               "nesterov": False})),
    ("X(shape=(1, 2), name='a')", ("X", {"shape": (1, 2), "name": "a"})),
    ("Adam(lr=0.001, lr_scheduler=ConstantScheduler(lr=0.001))",
     ("Adam", {"lr": 0.001, "lr_scheduler": "ConstantScheduler(lr=0.001)"})),
    ("E(x=-1e-07)", ("E", {"x": -1e-07})),
])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",
    "Adam(0.1)",
    "Adam(lr=1+x)",
    "Adam(**{'lr': 1})",
    "a.b(c=1)",
    "Adam(lr=",
    "",
])
def test_parse_spec_refuses_anything_but_literals(text):
    with pytest.raises(ValueError, match="cannot parse optimizer"):
        parse_spec(text, "optimizer")


def test_format_spec_round_trips():
    params = {"alpha": 0.1, "name": "x", "flag": None}
    assert parse_spec(format_spec("Thing", params)) == ("Thing", params)
    assert format_spec("Thing", {}) == "Thing"


@pytest.mark.parametrize("text", ["rms prop(lr=0.01)", "RMS-Prop(lr=0.01)", "rms_prop(lr=0.01)"])
def test_every_registry_reads_names_with_spaces_or_hyphens(text):
    from anyml.optimizers import RMSProp, get_optimizer

    assert get_optimizer(text) == RMSProp(lr=0.01)
