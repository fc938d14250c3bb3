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
