"""The native fast-path registry and the per-device chunk budget of :mod:`anyml.backend`."""

from __future__ import annotations

import contextlib
import importlib

import numpy as np
import pytest

import anyml
from anyml.backend import (
    Backend,
    NumpyBackend,
    backend_class_of,
    chunk_bytes,
    fast_path,
    replaceable,
    use_fast_paths,
)
from anyml.functional import conv, linear


@replaceable
def _double(x, xp=None):
    return x + x


@pytest.fixture
def registered(backend):
    """A native ``_double`` registered on the backend's class for the test only."""
    cls = type(backend)
    calls = []

    def native(x, xp=None):
        calls.append(x)
        return x * 2

    cls.register_fast_path("_double", native)
    yield calls
    del cls.fast_paths["_double"]


def test_the_pure_path_runs_when_nothing_is_registered(backend):
    x = backend.rng.normal((3,))
    assert fast_path("_double", x) is None
    np.testing.assert_array_equal(anyml.to_numpy(_double(x)), 2 * anyml.to_numpy(x))


def test_a_registered_fast_path_replaces_the_pure_function(backend, registered):
    x = backend.rng.normal((3,))
    assert backend_class_of(x) is type(backend)
    out = _double(x)
    assert len(registered) == 1 and registered[0] is x
    np.testing.assert_array_equal(anyml.to_numpy(out), anyml.to_numpy(_double.pure(x)))


def test_fast_paths_can_be_turned_off(backend, registered):
    x = backend.rng.normal((3,))
    with use_fast_paths(False):
        assert fast_path("_double", x) is None
        _double(x)
    assert registered == []
    _double(x)
    assert len(registered) == 1


def test_not_implemented_hands_the_call_back_to_the_pure_path(backend):
    cls = type(backend)
    cls.register_fast_path("_double", lambda x, xp=None: NotImplemented)
    try:
        x = backend.rng.normal((3,))
        np.testing.assert_array_equal(anyml.to_numpy(_double(x)), 2 * anyml.to_numpy(x))
    finally:
        del cls.fast_paths["_double"]


def test_registrations_stay_with_their_library():
    """Each Backend subclass has its own registry: registering on one leaves the others alone."""
    NumpyBackend.register_fast_path("_double", lambda x, xp=None: x)
    try:
        assert "_double" not in Backend.fast_paths
        for cls in Backend.__subclasses__():
            if cls is not NumpyBackend:
                assert "_double" not in cls.fast_paths
    finally:
        del NumpyBackend.fast_paths["_double"]


def test_the_register_decorator_returns_the_function():
    @NumpyBackend.register_fast_path("_double")
    def native(x, xp=None):
        return x

    try:
        assert NumpyBackend.fast_paths["_double"] is native
    finally:
        del NumpyBackend.fast_paths["_double"]


def test_public_kernels_are_replaceable():
    for fn in (conv.conv2d_forward, conv.conv2d_backward, linear.linear_forward):
        assert fn.pure is not fn and fn.__name__ == fn.pure.__name__


def test_non_arrays_have_no_backend_and_a_cpu_budget():
    assert backend_class_of(3.0) is None
    assert fast_path("conv2d_forward", [1.0]) is None
    assert chunk_bytes([1.0]) == 2 << 20


def test_the_chunk_budget_comes_from_the_backend(backend):
    x = backend.rng.normal((2,))
    assert chunk_bytes(x) == type(backend).chunk_bytes(x.device)
    assert chunk_bytes(x) is None or chunk_bytes(x) > 0


@pytest.mark.usefixtures("pure_paths")
def test_conv_chunks_follow_the_budget(backend64, monkeypatch):
    """With a budget of one example's columns the batch runs in one chunk per example, with the
    same result as one chunk."""
    X = backend64.rng.normal((4, 5, 5, 2))
    W = backend64.rng.normal((3, 3, 2, 3))
    whole, _ = conv.conv2d_forward(X, W, pad=1, max_chunk=10**9)
    seen = []
    real = conv._batches

    def spy(n, per_example, like, max_chunk):
        out = real(n, per_example, like, max_chunk)
        seen.append(len(out))
        return out

    monkeypatch.setattr(conv, "_batches", spy)
    monkeypatch.setattr(conv, "chunk_bytes", lambda like: 8)
    chunked, _ = conv.conv2d_forward(X, W, pad=1)
    assert seen == [4]
    np.testing.assert_allclose(anyml.to_numpy(chunked), anyml.to_numpy(whole), rtol=1e-12)


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (1.0, 1.0 + 2**-20), (-3.0, 5.0)])
def test_uniform_never_returns_high(backend, low, high):
    """Near ``high`` a float32 draw rounds up to it unless the generator moves it below."""
    x = anyml.to_numpy(backend.rng.uniform((20000,), low, high))
    assert x.dtype == np.dtype(backend.dtype_name)
    assert (x < np.asarray(high, dtype=x.dtype)).all() and (x >= np.asarray(low, dtype=x.dtype)).all()


def test_only_libraries_without_a_device_context_skip_it(backend):
    """NumPy and array-api-strict keep Backend's no-op context (entering it is skipped); CuPy, the
    emulated device and torch override it and are always entered."""
    from anyml.backend._fastpath import device_context_free

    free = device_context_free(type(backend))
    assert free == (backend.name in ("numpy", "array-api-strict"))
    if free:
        assert isinstance(backend.activate(), type(contextlib.nullcontext()))


def test_a_context_skipped_is_still_entered_where_it_does_something(backend, monkeypatch):
    """The fast-path wrapper enters the device context of a library that has one, at every call."""
    cls = type(backend)
    x = backend.asarray(np.ones(3))
    entered = []
    real = cls.device_context.__func__

    def counting(klass, device):
        entered.append(device)
        return real(klass, device)

    monkeypatch.setattr(cls, "device_context", classmethod(counting))
    from anyml.backend import _fastpath

    _fastpath._CONTEXT_FREE.clear()
    _fastpath._DISPATCH.clear()
    try:
        _double(x)
        assert len(entered) == 1  # overriding device_context makes even NumPy's context entered
    finally:
        monkeypatch.undo()
        _fastpath._CONTEXT_FREE.clear()
        _fastpath._DISPATCH.clear()


def test_registering_an_array_type_resets_the_dispatch_cache():
    from anyml.backend import _fastpath

    class Fake:
        pass

    _double(np.ones(2))
    assert np.ndarray in _fastpath._DISPATCH
    _fastpath.register_array_type(Fake, NumpyBackend)
    try:
        assert not _fastpath._DISPATCH
    finally:
        del _fastpath._ARRAY_TYPES[Fake]


@pytest.mark.parametrize(("module", "name"), [("_numpy_fast_conv", "conv2d_forward"),
                                              ("_numpy_fast_conv", "conv2d_backward"),
                                              ("_numpy_fast_embedding", "embedding_backward"),
                                              ("_numpy_fast_linear", "linear_backward"),
                                              ("_numpy_fast_pool", "pool2d_backward")])
def test_numpy_natives_are_registered_on_numpy_only(nb, module, name):
    native = getattr(importlib.import_module(f"anyml.backend.{module}"), name)
    assert fast_path(name, nb.rng.normal((1,))) is native
    strict = anyml.make_backend("array-api-strict", seed=0)
    assert fast_path(name, strict.rng.normal((1,))) is None
