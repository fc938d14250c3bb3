"""The NumPy fast path of tiled max pooling's backward pass against the pure path (the same call
inside ``use_fast_paths(False)``, as in ``test_torch_fast.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import anyml
from anyml.backend import fast_path, use_fast_paths
from anyml.functional import pool
from anyml.testing import assert_close


def _backward_both(nb, X, kernel, stride, pad=0, mode="max", seed=0):
    Y, cache = pool.pool2d_forward(X, kernel, stride, pad, mode)
    dY = nb.asarray(np.random.default_rng(seed).standard_normal(tuple(Y.shape)))
    native = fast_path("pool2d_backward", dY)(dY, cache)
    with use_fast_paths(False):
        pure = pool.pool2d_backward(dY, cache)
    return native, pure, pool.pool2d_backward(dY, cache)


@pytest.mark.parametrize(("shape", "kernel"), [((1, 8, 8, 4), 2), ((3, 6, 9, 2), (2, 3)),
                                               ((2, 9, 9, 5), 3), ((1, 4, 4, 1), (1, 1))])
def test_tiled_max_matches_the_pure_path(nb, shape, kernel):
    X = nb.rng.normal(shape)
    native, pure, dispatched = _backward_both(nb, X, kernel, kernel)
    assert native is not NotImplemented
    assert native.shape == X.shape and native.dtype == X.dtype
    assert_close(native, anyml.to_numpy(pure), backend=nb)
    assert_close(dispatched, anyml.to_numpy(pure), backend=nb)


def test_ties_and_nan_go_to_the_pure_path(nb):
    X = anyml.to_numpy(nb.rng.normal((2, 4, 4, 3))).copy()
    X[0, 0, 1, 0] = X[0, 0, 0, 0] = 5.0  # a tie: the first maximum takes the gradient
    native, pure, dispatched = _backward_both(nb, nb.asarray(X), 2, 2)
    assert native is NotImplemented
    assert_close(dispatched, anyml.to_numpy(pure), backend=nb)
    X = anyml.to_numpy(nb.rng.normal((1, 4, 4, 2))).copy()
    X[0, 2, 3, 1] = math.nan
    native, pure, dispatched = _backward_both(nb, nb.asarray(X), 2, 2)
    assert native is NotImplemented
    np.testing.assert_array_equal(anyml.to_numpy(dispatched), anyml.to_numpy(pure))


@pytest.mark.parametrize(("kernel", "stride", "pad", "mode", "shape"), [
    (2, 2, 0, "average", (1, 8, 8, 2)),  # average pooling
    (2, 1, 0, "max", (1, 5, 5, 2)),  # overlapping windows
    (2, 2, 1, "max", (1, 6, 6, 2)),  # padded
    (2, 2, 0, "max", (1, 7, 8, 2)),  # a remainder row
    (2, 2, 0, "max", (2, 32, 32, 16)),  # larger than MAX_SIZE: the pure path is faster there
    (2, 2, 0, "max", (0, 4, 4, 3)),  # an empty batch (a rank's share in data parallelism)
])
def test_other_poolings_go_to_the_pure_path(nb, kernel, stride, pad, mode, shape):
    native, pure, dispatched = _backward_both(nb, nb.rng.normal(shape), kernel, stride, pad, mode)
    assert native is NotImplemented
    assert_close(dispatched, anyml.to_numpy(pure), backend=nb)


def test_foreign_cache_goes_to_the_pure_path(nb):
    dY = nb.rng.normal((1, 2, 2, 1))
    native = fast_path("pool2d_backward", dY)
    assert native(dY, ("max",)) is NotImplemented
    assert native(dY, []) is NotImplemented
