"""Bad settings, parameters and inputs for all 21 layers: the constructor and ``set_params`` refuse
the same settings, ``set_params`` refuses parameters that are not finite real floats in the layer's
layout and leaves the layer as it was, and ``forward`` refuses integer input with advice that works."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from tests.bad_input._catalogue import BAD_SETTINGS, CASES
from tests.bad_input._helpers import refused

NAMES = sorted(CASES)


@pytest.fixture
def be32(make_backend_for):
    return make_backend_for("float32")


def _ready(name, be):
    """A layer of ``name`` after one forward pass (its parameters exist)."""
    case = CASES[name]
    layer = case.build(be)
    case.forward(layer, case.inputs(be), retain_derived=False)
    return layer


def _host_params(layer):
    return {k: anyml.to_numpy(v).copy() for k, v in layer.parameters.items()}


@pytest.mark.parametrize(("name", "key", "value"), BAD_SETTINGS)
def test_constructor_refuses(name, key, value):
    refused(name, CASES[name].build, anyml.make_backend("numpy"), **{key: value})


@pytest.mark.parametrize(("name", "key", "value"), BAD_SETTINGS)
def test_set_params_refuses_what_the_constructor_refuses(be32, name, key, value):
    layer = _ready(name, be32)
    config, params = layer._config(), _host_params(layer)
    optimizer = str(layer.optimizer)
    refused(name, layer.set_params, {"hyperparameters": {key: value}}, match=f"{name}.set_params")
    assert layer._config() == config and str(layer.optimizer) == optimizer
    for k, v in _host_params(layer).items():
        np.testing.assert_array_equal(v, params[k])
    case = CASES[name]
    case.forward(layer, case.inputs(be32), retain_derived=False)  # still usable


@pytest.mark.parametrize("name", NAMES)
def test_set_params_round_trip_still_accepted(be32, name):
    layer = _ready(name, be32)
    fresh = CASES[name].build(be32)
    fresh.set_params(layer.summary())
    assert fresh._config() == layer._config()


def _bad_values(shape):
    """(label, value) of parameter values that must be refused, for a parameter of ``shape``."""
    return [
        ("int", np.ones(shape, dtype=np.int64)),
        ("uint8", np.ones(shape, dtype=np.uint8)),
        ("bool", np.ones(shape, dtype=bool)),
        ("complex", np.ones(shape, dtype=np.complex128)),
        ("text", np.full(shape, "a")),
        ("object", np.full(shape, None, dtype=object)),
        ("nan", np.full(shape, np.nan)),
        ("inf", np.full(shape, -np.inf)),
        ("extra axis", np.ones((*shape, 2))),
        ("fewer values", np.ones(tuple(max(1, d - 1) for d in shape) if max(shape) > 1 else (2,))),
        ("scalar", np.float64(1.0)),
        ("empty", np.ones((0,))),
        ("ragged list", [[1.0, 2.0], [3.0]]),
        ("text scalar", "weights"),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_set_params_refuses_bad_parameters(be32, name):
    layer = _ready(name, be32)
    before = _host_params(layer)
    for key, value in before.items():
        for label, bad in _bad_values(value.shape):
            if label == "fewer values" and value.size == 1:
                continue
            refused(name, layer.set_params, {"parameters": {key: bad}})
            after = _host_params(layer)
            assert sorted(after) == sorted(before), label
            for k in before:
                np.testing.assert_array_equal(after[k], before[k], err_msg=f"{key} {label}")
                assert str(layer.parameters[k].dtype).endswith("float32"), (k, label)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [[1, 2], "summary", None, 3, (("W", 1),)])
def test_set_params_refuses_other_than_a_dict(be32, name, value):
    refused(name, CASES[name].build(be32).set_params, value)


@pytest.mark.parametrize("name", NAMES)
def test_set_params_sizes_must_agree_with_parameters(be32, name):
    layer = _ready(name, be32)
    sizes = [k for k in ("n_out", "n_in", "in_ch", "out_ch", "vocab_size")
             if isinstance(layer._config().get(k), int)]
    for key in sizes:
        for bad in (0, -1, 2.5, "4"):
            refused(name, layer.set_params, {key: bad})
        if layer.parameters:
            config = layer._config()
            try:
                layer.set_params({key: config[key] + 1})
            except ValueError as exc:  # refused: the parameters keep the old size
                assert name in str(exc)
                assert layer._config() == config
            else:  # accepted only where no parameter depends on it
                CASES[name].forward(layer, CASES[name].inputs(be32), retain_derived=False)


@pytest.mark.parametrize("name", [n for n in NAMES if not CASES[n].ids])
def test_integer_input_refused_with_advice_that_works(backend, name):
    case = CASES[name]
    layer = case.build(backend)
    ints = [backend.asarray(np.ones(a.shape, dtype=np.uint8)) for a in case.host_inputs(3, "float32")]
    refused(name, case.forward, layer, ints, types=(TypeError,),
            match=rf"backend\.asarray\(\w+(\[0\])?, dtype='{backend.dtype_name}'\)")
    converted = [backend.asarray(a, dtype=backend.dtype_name) for a in ints]
    case.forward(layer, converted)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_rank_refused(be32, name):
    case = CASES[name]
    layer = case.build(be32)
    good = case.host_inputs(3, "float32")
    for extra in (True, False):
        bad = [a[..., None] if extra else a.reshape(-1) for a in good]
        if name in ("Add", "Multiply", "Softmax", "Flatten"):
            continue  # any rank (Flatten: at least one axis; see the zero-size tests)
        refused(name, case.forward, layer, [be32.asarray(a) for a in bad])
