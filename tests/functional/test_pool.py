"""pool2d_forward / pool2d_backward: PyTorch, a naive reference, dtype and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anyml.functional.pool import pool2d_backward, pool2d_forward, resolve_pool_pads
from anyml.testing import assert_close


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize(("kernel", "stride", "pad"), [
    ((2, 2), (2, 2), 0), ((3, 2), (1, 2), (1, 0, 0, 1)), ((3, 3), (2, 2), "same")])
def test_matches_torch(backend, kernel, stride, pad, mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 6, 5, 3)).astype(backend.dtype_name)
    Y, cache = pool2d_forward(backend.asarray(X), kernel, stride, pad, mode)
    G = rng.standard_normal(tuple(Y.shape)).astype(backend.dtype_name)
    dX = pool2d_backward(backend.asarray(G), cache, xp=backend.xp)
    top, bottom, left, right = resolve_pool_pads(pad, (6, 5), kernel, stride)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    Xc = F.pad(Xt.permute(0, 3, 1, 2), (left, right, top, bottom),
               value=-math.inf if mode == "max" else 0.0)
    Yt = (F.max_pool2d if mode == "max" else F.avg_pool2d)(Xc, kernel, stride).permute(0, 2, 3, 1)
    Yt.backward(torch.tensor(G, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)


def test_max_matches_a_naive_loop_and_breaks_ties_to_the_first(backend64):
    X = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 2.0], [5.0, 5.0, 1.0]]).reshape(1, 3, 3, 1)
    Y, cache = pool2d_forward(backend64.asarray(X), 2, 1)
    dX = pool2d_backward(backend64.asarray(np.array([1.0, 10.0, 100.0, 1000.0]).reshape(1, 2, 2, 1)),
                         cache)
    assert_close(Y, np.array([[3.0, 3.0], [5.0, 5.0]]).reshape(1, 2, 2, 1), backend=backend64)
    # window (0,0) holds 3 at (0,1) and (1,0): the first in row-major order wins
    expected = np.zeros((3, 3))
    expected[0, 1] += 1.0 + 10.0
    expected[2, 0] += 100.0
    expected[2, 1] += 1000.0
    assert_close(dX, expected.reshape(1, 3, 3, 1), backend=backend64, rtol=0, atol=0)


def test_max_padding_never_wins(backend64):
    X = -np.ones((1, 2, 2, 1)) * 7.0
    Y, _ = pool2d_forward(backend64.asarray(X), 2, 1, pad=1, mode="max")
    assert_close(Y, np.full((1, 3, 3, 1), -7.0), backend=backend64, rtol=0, atol=0)
    Y, _ = pool2d_forward(backend64.asarray(X), 2, 1, pad=1, mode="average")
    expected = np.array([[-7, -14, -7], [-14, -28, -14], [-7, -14, -7]]) / 4.0
    assert_close(Y, expected.reshape(1, 3, 3, 1), backend=backend64, rtol=0, atol=0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "median"}, r"pool2d: unknown mode 'median'"),
    ({"kernel_shape": 0}, r"pool2d: kernel_shape must be"),
    ({"stride": (1, 0)}, r"pool2d: stride must be"),
    ({"pad": (0, 0, 2, 0)}, r"pool2d: the left pad \(2\) must be smaller than the kernel"),
    ({"kernel_shape": 5}, r"pool2d: the kernel spans 5 rows"),
])
def test_errors(kwargs, match):
    args = {"kernel_shape": 2, "stride": 1, "pad": 0, "mode": "max", **kwargs}
    with pytest.raises(ValueError, match=match):
        pool2d_forward(np.ones((1, 4, 4, 1)), **args)
    with pytest.raises(ValueError, match=r"pool2d: expected X of shape"):
        pool2d_forward(np.ones((4, 4, 1)), 2)
