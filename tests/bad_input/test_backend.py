"""The backend selector and conversions: a bad name is a clear error; asarray keeps 0-d shapes on
every backend."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from tests.bad_input._helpers import refused


@pytest.mark.parametrize("value", [3.0, 2, True, np.float64(1.5), np.array(4.0), np.array(7)])
def test_asarray_of_a_scalar_is_0d(backend, value):
    a = backend.asarray(value)
    assert tuple(a.shape) == ()
    assert tuple(backend.asarray(a).shape) == ()
    assert tuple(backend.asarray(value, dtype=backend.dtype_name).shape) == ()


def test_asarray_keeps_shapes(backend):
    for shape in [(0,), (1,), (2, 0), (1, 1, 1)]:
        assert tuple(backend.asarray(np.zeros(shape)).shape) == shape


@pytest.mark.parametrize("name", [None, 3, ["numpy"], b"numpy"])
def test_make_backend_refuses_non_names(name):
    refused("make_backend", anyml.make_backend, name, types=(TypeError,))


@pytest.mark.parametrize("name", ["nump", "", "cuda"])
def test_unknown_names(name):
    refused("unknown backend", anyml.make_backend, name, types=(ValueError,))


@pytest.mark.parametrize("dtype", ["float16", "int64", "complex64", 3])
def test_bad_dtypes(dtype):
    refused("dtype", anyml.make_backend, "numpy", dtype=dtype)


def test_set_backend_refuses_non_names():
    refused("make_backend", anyml.set_backend, None, types=(TypeError,))


def test_a_layer_refuses_arrays_of_another_backend(backend):
    from anyml.layers import FullyConnected

    if backend.name == "numpy":
        pytest.skip("a NumPy array is this backend's own")
    refused("FullyConnected", FullyConnected(3, backend=backend).forward, np.zeros((2, 4)),
            types=(TypeError,), match="asarray")
