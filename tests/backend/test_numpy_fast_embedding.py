"""The NumPy fast path of the embedding weight gradient against the pure path.

The pure reference is the same call inside ``use_fast_paths(False)`` (as in ``test_torch_fast.py``);
the fast path is registered on the numpy backend only.
"""

from __future__ import annotations

import numpy as np
import pytest

from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.backend import fast_path, use_fast_paths
from anyml.backend._arrays import scatter_rows
from anyml.functional import embedding
from anyml.testing import assert_close


def _both(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the fast paths on and off; array arguments are copied for each
    (the backward writes into its accumulator)."""
    out = []
    for enabled in (True, False):
        copied = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        kw = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        with use_fast_paths(enabled):
            out.append(fn(*copied, **kw))
    return out


def _rect(nb, pool, n_ex=5, n_in=7, vocab=11, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = nb.asarray(rng.integers(0, vocab, size=(n_ex, n_in)), dtype="int64")
    W = nb.rng.normal((vocab, n_out))
    Y, cache = embedding.embedding_forward(ids, W, pool)
    dY = nb.asarray(rng.standard_normal(tuple(Y.shape)))
    return W, cache, dY


@pytest.mark.parametrize("pool", embedding.POOLS)
@pytest.mark.parametrize("into", ["none", "zeros", "zeros-given", "values"])
def test_rectangular_matches_the_pure_path(nb, pool, into):
    W, cache, dY = _rect(nb, pool)
    acc = {"none": None, "zeros": nb.xp.zeros(W.shape, dtype=W.dtype),
           "zeros-given": nb.xp.zeros(W.shape, dtype=W.dtype),
           "values": nb.rng.normal(tuple(W.shape))}[into]
    fast, pure = _both(embedding.embedding_backward, dY, cache, nb.index_add,
                       accumulate_into=acc, zeros_given=into == "zeros-given")
    assert fast.dtype == W.dtype and fast.shape == W.shape
    assert_close(fast, pure, backend=nb, err_msg=f"{pool}, {into}")


@pytest.mark.parametrize("pool", ["sum", "mean"])
@pytest.mark.parametrize("into", [False, True])
def test_ragged_matches_the_pure_path(nb, pool, into):
    rng = np.random.default_rng(1)
    lengths = [3, 0, 5, 1, 4]
    ids = nb.asarray(rng.integers(0, 6, size=sum(lengths)), dtype="int64")
    segments = nb.asarray(np.repeat(np.arange(len(lengths)), lengths), dtype="int64")
    W = nb.rng.normal((6, 4))
    Y, cache = embedding.embedding_bag_forward(ids, segments, len(lengths), W, pool, nb.index_add)
    dY = nb.asarray(rng.standard_normal(tuple(Y.shape)))
    acc = nb.rng.normal((6, 4)) if into else None
    fast, pure = _both(embedding.embedding_backward, dY, cache, nb.index_add, accumulate_into=acc)
    assert_close(fast, pure, backend=nb, err_msg=pool)


@pytest.mark.parametrize("zero", [False, True])
def test_heavily_repeated_ids_reach_the_sorted_rest(nb, zero):
    """An id repeated more often than the unique-row rounds finishes through the sorted sums."""
    rng = np.random.default_rng(2)
    index = np.concatenate([np.full(9, 3), rng.integers(0, 8, size=20), np.full(6, 0)])
    rng.shuffle(index)
    source = rng.standard_normal((index.shape[0], 5)).astype(nb.dtype_name)
    start = np.zeros((8, 5), dtype=nb.dtype_name) if zero else rng.standard_normal((8, 5)).astype(
        nb.dtype_name)
    want = start.astype(np.float64)
    np.add.at(want, index, source.astype(np.float64))
    got = scatter_rows(start.copy(), index, source, zero=zero)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # through a map from each position to its source row
    rows = rng.integers(0, 4, size=index.shape[0])
    want = start.astype(np.float64)
    np.add.at(want, index, source[rows].astype(np.float64))
    got = scatter_rows(start.copy(), index, source[:4].copy(), rows, zero=zero)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_no_ids_leave_the_accumulator_unchanged(nb):
    W = nb.rng.normal((4, 2))
    ids = nb.xp.zeros((0, 3), dtype=nb.xp.int64)
    _, cache = embedding.embedding_forward(ids, W, None)
    dY = nb.xp.zeros((0, 3, 2), dtype=W.dtype)
    acc = nb.rng.normal((4, 2))
    fast, pure = _both(embedding.embedding_backward, dY, cache, nb.index_add, accumulate_into=acc)
    assert_close(fast, pure, backend=nb)
    fast, pure = _both(embedding.embedding_backward, dY, cache, nb.index_add)
    assert_close(fast, np.zeros((4, 2)), backend=nb)


def test_non_contiguous_upstream_gradient(nb):
    _, cache, dY = _rect(nb, None)
    wide = nb.xp.concat([dY, dY], axis=2)[:, :, ::2]  # a strided view of dY's shape
    fast, pure = _both(embedding.embedding_backward, wide, cache, nb.index_add)
    assert_close(fast, pure, backend=nb)


def test_foreign_cache_and_bad_shapes_take_the_pure_path(nb):
    W, cache, dY = _rect(nb, None)
    native = fast_path("embedding_backward", dY)
    assert native(dY, tuple(cache), nb.index_add) is NotImplemented
    assert native(dY[:, :2, :], cache, nb.index_add) is NotImplemented  # the pure path raises
    with pytest.raises(ValueError):
        embedding.embedding_backward(dY[:, :2, :], cache, nb.index_add)
    _, pooled, dYp = _rect(nb, "sum")
    assert native(dYp[:2], pooled, nb.index_add) is NotImplemented
    wrong = nb.xp.zeros((3, 3), dtype=W.dtype)
    assert native(dY, cache, nb.index_add, accumulate_into=wrong) is NotImplemented


@pytest.mark.parametrize("pool", embedding.POOLS)
def test_layer_gradients_match_the_pure_path(nb, pool):
    """Two backward passes per flush, over several flushes: the first after a flush writes over the
    flushed zeros, the second adds; the same gradients as the pure path."""
    rng = np.random.default_rng(3)
    layers = {enabled: L.Embedding(4, vocab_size=9, pool=pool, backend=nb) for enabled in (True, False)}
    layers[False].set_params(layers[True].summary())
    for step in range(3):
        X1, X2 = (nb.asarray(rng.integers(0, 9, size=(6, 5)), dtype="int64") for _ in range(2))
        grads = {}
        for enabled, layer in layers.items():
            with use_fast_paths(enabled):
                Y1, Y2 = layer.forward(X1), layer.forward(X2)
                layer.backward(nb.asarray(np.linspace(-1, 1, Y2.size).reshape(Y2.shape)))
                layer.backward(nb.asarray(np.cos(np.arange(Y1.size)).reshape(Y1.shape)))
                grads[enabled] = layer.gradients["W"]
                held = grads[enabled].copy()
                layer.flush_gradients()
                # an array handed out is never changed afterwards
                np.testing.assert_array_equal(grads[enabled], held)
        assert_close(grads[True], grads[False], backend=nb, err_msg=f"step {step}")


def test_the_cache_fields_are_the_pure_ones():
    from anyml.backend import _numpy_fast_embedding

    assert embedding.EmbeddingCache._fields == _numpy_fast_embedding._CACHE_FIELDS
