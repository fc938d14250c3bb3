"""The backend selector: choosing, random numbers, scatter-add, host transfer and errors."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.backend import BackendUnavailableError, make_backend, namespace_of, resolve_backend
from anyml.backend import _selector as selector
from anyml.testing import assert_close


def test_default_is_numpy_float32(monkeypatch):
    monkeypatch.delenv("ANYML_BACKEND", raising=False)
    monkeypatch.setattr(selector, "_current", None)
    be = anyml.get_backend()
    assert be.name == "numpy"
    assert be.dtype_name == "float32"


@pytest.mark.parametrize("name", ["array-api-strict", "torch"])
def test_environment_variable_chooses_the_default(monkeypatch, name):
    pytest.importorskip("torch" if name == "torch" else "array_api_strict")
    monkeypatch.setenv("ANYML_BACKEND", name)
    monkeypatch.setattr(selector, "_current", None)
    assert anyml.get_backend().name == name


def test_set_backend_then_use_backend_nests():
    outer = anyml.set_backend("numpy", dtype="float64", seed=1)
    assert anyml.get_backend() is outer
    with anyml.use_backend("array-api-strict") as inner:
        assert anyml.get_backend() is inner
        with anyml.use_backend(outer):
            assert anyml.get_backend() is outer
        assert anyml.get_backend() is inner
    assert anyml.get_backend() is outer


def test_use_backend_restores_after_an_error():
    before = anyml.get_backend()
    with pytest.raises(KeyError), anyml.use_backend("array-api-strict"):
        raise KeyError("boom")
    assert anyml.get_backend() is before


def test_auto_is_numpy_without_a_gpu():
    pytest.importorskip("numpy")
    try:
        import cupy

        if cupy.is_available():
            pytest.skip("a CUDA device is visible: auto means cupy here")
    except ImportError:
        pass
    assert make_backend("auto").name == "numpy"


@pytest.mark.parametrize(("name", "match"), [("tensorflow", "unknown backend 'tensorflow'"),
                                             ("", "unknown backend")])
def test_unknown_backend_names_the_choices(name, match):
    with pytest.raises(ValueError, match=match) as info:
        anyml.set_backend(name)
    assert "numpy" in str(info.value)


def test_cupy_without_gpu_says_why_and_what_to_install():
    try:
        import cupy

        if cupy.is_available():
            pytest.skip("a CUDA device is usable here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailableError, match="cupy backend: CuPy .*(not installed|no usable)"):
        anyml.set_backend("cupy")


@pytest.mark.parametrize("dtype", ["float16", "int32", object])
def test_bad_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        make_backend("numpy", dtype=dtype)


def test_numpy_has_only_the_cpu():
    with pytest.raises(ValueError, match="only device is 'cpu'"):
        make_backend("numpy", device="cuda:0")


def test_strict_unknown_device_lists_devices():
    pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match="device1"):
        make_backend("array-api-strict", device="gpu7")


def test_resolve_backend_accepts_names_objects_and_none():
    be = make_backend("numpy")
    assert resolve_backend(be) is be
    assert resolve_backend("numpy").name == "numpy"
    assert resolve_backend(None) is anyml.get_backend()
    with pytest.raises(TypeError, match="backend name or a Backend"):
        resolve_backend(3)


def test_available_backends_reports_every_backend():
    status = anyml.available_backends()
    assert set(status) == {"numpy", "cupy", "torch", "array-api-strict"}
    assert status["numpy"] == "ok"


# --------------------------------------------------------------------------- per-backend behaviour
def test_asarray_and_to_numpy_round_trip(backend):
    host = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    x = backend.asarray(host)
    assert backend.owns(x)
    assert x.dtype == backend.dtype
    assert namespace_of(x) is backend.xp
    np.testing.assert_array_equal(anyml.to_numpy(x), host.astype(backend.dtype_name))
    ids = backend.asarray(np.array([3, 1]))
    assert ids.dtype == backend.xp.int64


def test_asarray_converts_from_another_backend(backend):
    other = make_backend("numpy", dtype="float64")
    x = backend.asarray(other.asarray([[1.5, 2.5]]))
    assert backend.owns(x)
    assert_close(x, [[1.5, 2.5]], backend=backend)


def test_check_array_refuses_other_libraries(backend):
    with pytest.raises(TypeError, match=r"MyLayer: expected X to be a .* array on device"):
        backend.check_array([1.0, 2.0], "MyLayer")
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="MyLayer"):
            backend.check_array(np.ones(2), "MyLayer")


def test_strict_second_device_is_told_apart():
    pytest.importorskip("array_api_strict")
    cpu = make_backend("array-api-strict")
    dev1 = make_backend("array-api-strict", device="device1")
    x = dev1.asarray([1.0])
    assert dev1.owns(x) and not cpu.owns(x)
    with pytest.raises(TypeError, match="got an array on device"):
        cpu.check_array(x, "Layer")


def test_index_add_accumulates_repeated_indices(backend):
    target = backend.asarray(np.zeros((4, 2)))
    index = backend.asarray(np.array([0, 2, 0, 0, 3]))
    source = backend.asarray(np.arange(10, dtype=np.float64).reshape(5, 2))
    out = backend.index_add(target, index, source)
    expected = np.zeros((4, 2))
    np.add.at(expected, [0, 2, 0, 0, 3], np.arange(10.0).reshape(5, 2))
    assert_close(out, expected, backend=backend)


@pytest.mark.parametrize(("n_rows", "n_updates", "row_shape"), [
    (4, 0, (2,)), (7, 1, ()), (50, 300, (3,)), (5, 300, (2, 2)), (1000, 64, (4,))])
def test_index_add_matches_numpy_add_at(backend, n_rows, n_updates, row_shape):
    """Few and many repeats (the numpy fast path switches strategy), 1-D and 3-D targets."""
    rng = np.random.default_rng(n_rows + n_updates)
    base = rng.standard_normal((n_rows, *row_shape))
    index = rng.integers(0, n_rows, size=n_updates)
    source = rng.standard_normal((n_updates, *row_shape))
    expected = base.copy()
    np.add.at(expected, index, source)
    out = backend.index_add(backend.asarray(base), backend.asarray(index), backend.asarray(source))
    assert_close(out, expected, backend=backend)


def test_row_broadcasts_keeps_results_and_restores_numpy_state(backend):
    """The scope only changes how fast broadcasts run: same bits inside, NumPy's buffer restored."""
    rng = np.random.default_rng(0)
    X, s = backend.asarray(rng.standard_normal((64, 1000))), backend.asarray(rng.standard_normal((64, 1)))
    outside = anyml.to_numpy(X * s - s)
    before = np.getbufsize()
    with backend.row_broadcasts(1000):
        inside = anyml.to_numpy(X * s - s)
        assert np.getbufsize() == (992 if backend.name == "numpy" else before)
        with backend.row_broadcasts(100):  # short rows run faster through the buffer: kept
            assert np.getbufsize() == (992 if backend.name == "numpy" else before)
    np.testing.assert_array_equal(inside, outside)
    assert np.getbufsize() == before
    with pytest.raises(ZeroDivisionError), backend.row_broadcasts(1000):
        raise ZeroDivisionError
    assert np.getbufsize() == before


def test_generator_is_seeded_and_typed(backend_id, make_backend_for, dtype):
    a, b = make_backend_for(dtype, seed=7), make_backend_for(dtype, seed=7)
    for draw in (lambda be: be.rng.uniform((3, 4), -2.0, 2.0),
                 lambda be: be.rng.normal((3, 4), 1.0, 0.5),
                 lambda be: be.rng.bernoulli((3, 4), 0.3)):
        x, y = draw(a), draw(b)
        assert a.owns(x) and x.dtype == a.dtype and tuple(x.shape) == (3, 4)
        np.testing.assert_array_equal(anyml.to_numpy(x), anyml.to_numpy(y))
    u = anyml.to_numpy(a.rng.uniform((1000,), -2.0, 2.0))
    assert u.min() >= -2.0 and u.max() < 2.0
    bern = anyml.to_numpy(a.rng.bernoulli((4000,), 0.3))
    assert set(np.unique(bern)) <= {0.0, 1.0}
    assert abs(bern.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
    ints = a.rng.integers(2, 5, (500,))
    assert ints.dtype == a.xp.int64
    host_ints = anyml.to_numpy(ints)
    assert host_ints.min() == 2 and host_ints.max() == 4
    perm = anyml.to_numpy(a.rng.permutation(50))
    np.testing.assert_array_equal(np.sort(perm), np.arange(50))


def test_reseeding_repeats_the_stream(backend):
    backend.seed(3)
    first = anyml.to_numpy(backend.rng.normal((5,)))
    host_first = backend.host_rng.standard_normal(3)
    backend.seed(3)
    np.testing.assert_array_equal(anyml.to_numpy(backend.rng.normal((5,))), first)
    np.testing.assert_array_equal(backend.host_rng.standard_normal(3), host_first)


@pytest.mark.parametrize("target", ["int64", "float64"])
def test_asarray_casts_arrays_of_the_backend_by_dtype_name(backend, target):
    x = backend.asarray(np.array([1.0, 2.0]))
    out = backend.asarray(x, dtype=target)
    assert backend.owns(out)
    assert out.dtype == getattr(backend.xp, target)
    np.testing.assert_array_equal(anyml.to_numpy(out), [1, 2])
