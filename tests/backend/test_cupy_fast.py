"""CuPy's native kernels: registered, and equal to the pure functions they replace.

No CUDA device is needed: the wrappers are called on NumPy arrays with a stand-in for
``cupyx.scipy.special`` made of SciPy's functions (the same definitions CuPy implements), which
checks the wrapping (arguments, dtype handling, hand-back) but not CuPy itself; the GPU checks do that.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from anyml.backend import CupyBackend
from anyml.backend import _cupy_fast as fast
from anyml.functional import special


@pytest.fixture
def fake_cupyx(monkeypatch):
    scipy_special = pytest.importorskip("scipy.special")
    module = types.ModuleType("cupyx.scipy.special")
    module.erf, module.erfc = scipy_special.erf, scipy_special.erfc
    parent, scipy = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
    parent.scipy, scipy.special = scipy, module
    for name, mod in (("cupyx", parent), ("cupyx.scipy", scipy), ("cupyx.scipy.special", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    return module


def test_the_cupy_backend_registers_erf_and_erfc():
    assert CupyBackend.fast_paths["erf"] is fast.erf
    assert CupyBackend.fast_paths["erfc"] is fast.erfc


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_wrappers_equal_the_pure_functions(fake_cupyx, dtype):
    x = np.linspace(-6, 6, 241).astype(dtype)
    for native, pure in ((fast.erf, special.erf.pure), (fast.erfc, special.erfc.pure)):
        got = native(x)
        assert got.dtype == x.dtype
        rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-15)
        np.testing.assert_allclose(got, pure(x, np), rtol=rtol, atol=atol)


def test_integer_input_is_handed_back(fake_cupyx):
    assert fast.erf(np.arange(3)) is NotImplemented
    assert fast.erfc(np.arange(3)) is NotImplemented


@pytest.fixture
def fake_fuse(monkeypatch):
    """``cupy.fuse`` as the identity: the fused functions run as written, on NumPy arrays."""
    module = types.ModuleType("cupy")
    module.fuse = lambda *args, **kwargs: (lambda fn: fn)
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(fast, "_FUSED", {})
    return module


def test_the_cupy_backend_registers_the_normalization_kernels():
    for name in ("batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward"):
        assert CupyBackend.fast_paths[name] is getattr(fast, name)


@pytest.mark.parametrize(("kind", "shape"), [("batch", (7, 5)), ("batch", (3, 4, 5, 2)),
                                             ("layer", (6, 10)), ("layer", (3, 4, 5, 2))])
def test_the_normalization_kernels_equal_the_pure_functions(fake_fuse, kind, shape):
    from anyml.functional import norm

    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape) * 3.0 + 1.0
    dY = rng.standard_normal(shape)
    p_shape = shape[-1:] if kind == "batch" else shape[1:]
    g, b = rng.uniform(0.5, 1.5, p_shape), rng.standard_normal(p_shape)
    forward = getattr(fast, f"{kind}norm_forward")
    backward = getattr(fast, f"{kind}norm_backward")
    pure_forward = getattr(norm, f"{kind}norm_forward").pure
    pure_backward = getattr(norm, f"{kind}norm_backward").pure
    Y, cache = forward(X, g, b, 1e-5)
    Y0, cache0 = pure_forward(X, g, b, 1e-5, xp=np)
    np.testing.assert_allclose(Y, Y0, rtol=1e-12, atol=1e-12)
    for stat in ("mean", "var", "inv_std"):
        np.testing.assert_allclose(getattr(cache, stat), getattr(cache0, stat), rtol=1e-12)
    for got, want in zip(backward(dY, cache), pure_backward(dY, cache0, xp=np), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for got, want in zip(backward(dY, cache0), pure_backward(dY, cache, xp=np), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)  # either cache serves either


def test_what_the_normalization_kernels_do_not_cover_is_handed_back(fake_fuse):
    from anyml.functional import norm

    X, g, b = np.ones((4, 3)), np.ones(3), np.zeros(3)
    assert fast.batchnorm_forward(X, g, b, reduce=lambda arrays: arrays) is NotImplemented
    assert fast.batchnorm_forward(X, g, b, running_mean=g, running_var=g) is NotImplemented
    assert fast.layernorm_forward(np.ones(3), g, b) is NotImplemented
    assert fast.layernorm_forward(np.ones((0, 3)), g, b) is NotImplemented
    _, running = norm.batchnorm_forward.pure(X, g, b, running_mean=b, running_var=g, xp=np)
    assert fast.batchnorm_backward(X, running) is NotImplemented
    assert fast.layernorm_backward(X, object()) is NotImplemented
