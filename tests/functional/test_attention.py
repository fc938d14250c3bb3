"""Scaled dot-product attention kernels against PyTorch float64 autograd, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.functional.attention import attention_backward, attention_forward
from anyml.testing import assert_close

# (batch axes, n_q, n_kv, d_k, d_v)
CASES = [((2,), 3, 4, 5, 2), ((2, 3), 1, 5, 4, 3)]


def _inputs(case, dtype, seed=0):
    batch, n_q, n_kv, d_k, d_v = case
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((*batch, n_q, d_k)).astype(dtype)
    K = rng.standard_normal((*batch, n_kv, d_k)).astype(dtype)
    V = rng.standard_normal((*batch, n_kv, d_v)).astype(dtype)
    dY = rng.standard_normal((*batch, n_q, d_v)).astype(dtype)
    return Q, K, V, dY


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scale", [True, False])
def test_matches_torch_scaled_dot_product_attention(backend, case, scale):
    torch = pytest.importorskip("torch")
    Q, K, V, dY = _inputs(case, backend.dtype_name)
    Y, cache = attention_forward(*(backend.asarray(a) for a in (Q, K, V)), scale=scale)
    dQ, dK, dV = attention_backward(backend.asarray(dY), cache)

    Qt, Kt, Vt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (Q, K, V))
    Yt = torch.nn.functional.scaled_dot_product_attention(
        Qt, Kt, Vt, scale=None if scale else 1.0)
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    for got, want in ((Y, Yt.detach()), (dQ, Qt.grad), (dK, Kt.grad), (dV, Vt.grad)):
        assert_close(got, want.numpy(), backend=backend)


@pytest.mark.parametrize("case", CASES)
def test_keep_mask_matches_torch(backend, case):
    torch = pytest.importorskip("torch")
    Q, K, V, dY = _inputs(case, backend.dtype_name, seed=1)
    batch, n_q, n_kv, _, _ = case
    mask = np.random.default_rng(2).random((*batch, n_q, n_kv)) >= 0.4
    keep = (mask / 0.6).astype(backend.dtype_name)
    Y, cache = attention_forward(*(backend.asarray(a) for a in (Q, K, V)), keep=backend.asarray(keep))
    dQ, dK, dV = attention_backward(backend.asarray(dY), cache)

    Qt, Kt, Vt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (Q, K, V))
    A = torch.softmax(Qt @ Kt.transpose(-1, -2) / np.sqrt(Q.shape[-1]), dim=-1)
    Yt = (A * torch.tensor(keep, dtype=torch.float64)) @ Vt
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    for got, want in ((Y, Yt.detach()), (dQ, Qt.grad), (dK, Kt.grad), (dV, Vt.grad)):
        assert_close(got, want.numpy(), backend=backend)


def test_weights_sum_to_one_and_large_scores_do_not_overflow(backend):
    Q = backend.asarray(np.full((1, 2, 3), 300.0))
    K = backend.asarray(np.array([[[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]]))
    V = backend.asarray(np.array([[[1.0], [2.0]]]))
    Y, cache = attention_forward(Q, K, V)
    assert_close(backend.xp.sum(cache.weights, axis=-1), np.ones((1, 2)), backend=backend)
    assert_close(Y, np.ones((1, 2, 1)), backend=backend)
