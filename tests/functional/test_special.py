"""erf and erfc against the standard library, on every backend and in both float dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import anyml
from anyml.functional.special import erf, erfc

# Relative tolerances: float64 is held to the 1e-14 asked of it, float32 to 16 ulp (measured: 8).
RTOL = {"float32": 2e-6, "float64": 1e-14}


def _grid(dtype: str) -> np.ndarray:
    dense = np.linspace(-7.0, 7.0, 14001)
    edges = np.array([-2.5, 2.5, np.nextafter(2.5, 0), np.nextafter(-2.5, 0), 1e-30, -1e-30, 0.0])
    return np.concatenate([dense, edges]).astype(dtype)


def _check(backend: anyml.Backend, out, desired: np.ndarray, rtol: float, atol: float = 0.0):
    assert backend.owns(out)
    assert out.dtype == backend.dtype
    np.testing.assert_allclose(backend.to_host(out).astype(np.float64), desired, rtol=rtol,
                               atol=atol)


def test_erf_matches_math_erf(backend: anyml.Backend) -> None:
    host = _grid(backend.dtype_name)
    desired = np.array([math.erf(v) for v in host.astype(np.float64)])
    out = erf(backend.from_host(host))
    _check(backend, out, desired, RTOL[backend.dtype_name])


def test_erf_with_explicit_namespace(backend: anyml.Backend) -> None:
    host = _grid(backend.dtype_name)[::50]
    desired = np.array([math.erf(v) for v in host.astype(np.float64)])
    _check(backend, erf(backend.from_host(host), xp=backend.xp), desired, RTOL[backend.dtype_name])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_erfc_tail_has_full_relative_accuracy(backend: anyml.Backend, sign: float) -> None:
    # x >= 2.5 comes straight from the continued fraction; x <= 0 adds to at least 1.
    top = 9.0 if backend.dtype_name == "float32" else 26.0
    host = (sign * np.linspace(2.5, top, 2001)).astype(backend.dtype_name)
    desired = np.array([math.erfc(v) for v in host.astype(np.float64)])
    _check(backend, erfc(backend.from_host(host)), desired, RTOL[backend.dtype_name])


def test_erfc_middle_is_accurate_in_absolute_terms(backend: anyml.Backend) -> None:
    host = np.linspace(0.0, 2.5, 2001).astype(backend.dtype_name)
    desired = np.array([math.erfc(v) for v in host.astype(np.float64)])
    eps = float(np.finfo(backend.dtype_name).eps)
    _check(backend, erfc(backend.from_host(host)), desired, rtol=0.0, atol=8 * eps)


def test_extreme_and_special_values(backend: anyml.Backend) -> None:
    big = float(np.finfo(backend.dtype_name).max)
    host = np.array([big, -big, np.inf, -np.inf, 1e4, -1e4], dtype=backend.dtype_name)
    _check(backend, erf(backend.from_host(host)), np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]),
           rtol=0.0)
    _check(backend, erfc(backend.from_host(host)), np.array([0.0, 2.0, 0.0, 2.0, 0.0, 2.0]),
           rtol=0.0)
    out = backend.to_host(erf(backend.from_host(np.array([np.nan], dtype=backend.dtype_name))))
    assert np.isnan(out).all()


def test_shape_is_kept(backend: anyml.Backend) -> None:
    x = backend.rng.normal((3, 4, 5))
    out = erf(x)
    assert tuple(out.shape) == (3, 4, 5)
    assert backend.owns(out)


def test_integer_input_is_refused(backend: anyml.Backend) -> None:
    x = backend.from_host(np.arange(3))
    with pytest.raises(TypeError, match="real floating"):
        erf(x)
