"""The NumPy fast path of the affine map's backward pass for one example against the pure path (the
same call inside ``use_fast_paths(False)``, as in ``test_torch_fast.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.backend import fast_path, use_fast_paths
from anyml.functional import linear
from anyml.testing import assert_close


def _both(nb, n_ex, n_in=7, n_out=5):
    X, W, b = nb.rng.normal((n_ex, n_in)), nb.rng.normal((n_in, n_out)), nb.rng.normal((n_out,))
    Z, cache = linear.linear_forward(X, W, b)
    dZ = nb.rng.normal(tuple(Z.shape))
    native = fast_path("linear_backward", dZ)(dZ, cache)
    with use_fast_paths(False):
        pure = linear.linear_backward(dZ, cache)
    return native, pure, linear.linear_backward(dZ, cache)


def test_one_example_matches_the_pure_path(nb):
    native, pure, dispatched = _both(nb, 1)
    assert native is not NotImplemented
    for name, got, want, through in zip(("dX", "dW", "db"), native, pure, dispatched, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert_close(got, anyml.to_numpy(want), backend=nb, err_msg=name)
        assert_close(through, anyml.to_numpy(want), backend=nb, err_msg=name)
    # the same single products: equal values
    np.testing.assert_array_equal(native[1], pure[1])


@pytest.mark.parametrize("n_ex", [0, 2, 16])
def test_other_batches_go_to_the_pure_path(nb, n_ex):
    native, pure, dispatched = _both(nb, n_ex)
    assert native is NotImplemented
    for got, want in zip(dispatched, pure, strict=True):
        assert_close(got, anyml.to_numpy(want), backend=nb)


def test_mismatched_arrays_go_to_the_pure_path(nb):
    dZ = nb.rng.normal((1, 5))
    native = fast_path("linear_backward", dZ)
    X, W = nb.rng.normal((1, 7)), nb.rng.normal((7, 5))
    assert native(dZ, (X, nb.rng.normal((6, 5)))) is NotImplemented
    assert native(nb.rng.normal((1, 4)), (X, W)) is NotImplemented
    assert native(dZ, (X.astype(np.float16), W)) is NotImplemented
    assert native(dZ, [X, W]) is NotImplemented
    with pytest.raises(ValueError):
        linear.linear_backward(nb.rng.normal((1, 4)), (X, W))
