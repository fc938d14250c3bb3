"""Data-parallel training on a thread group equals training on one process (float64, every CPU
backend): the same parameters to 1e-10 relative, with sum and mean losses, uneven and empty shares,
synchronized batch normalization, deterministic dropout, SET rewiring and gradient accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.distributed import AbortedError, ThreadGroup
from tests.distributed._models import assert_same_run, conv, data, dense, params, run, sparse

RANKS = [2, 3, 4]


def _fit(make_backend_for, build, kind: str, n: int, **fit_kwargs):
    X, y = data(kind, n)
    make_backend_for()  # skip here, in the test's thread, when the backend is missing

    def train(comm):
        model = build(make_backend_for(seed=3))
        history = model.fit(X, y, verbose=False, comm=comm, **fit_kwargs)
        return params(model), history

    return train


@pytest.mark.parametrize("size", RANKS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_dense_equals_one_process(make_backend_for, size, reduction):
    # 23 examples in batches of 6: an uneven last batch of 5 (shares 1 and 2 on 4 ranks)
    train = _fit(make_backend_for, lambda be: dense(be, f"CrossEntropy(reduction={reduction!r})"),
                 "class", 23, epochs=3, batch_size=6)
    (want, want_hist), = run(1, train)
    results = run(size, train)
    for got, hist in results:
        assert_same_run(got, want)
        np.testing.assert_allclose(hist["loss"], want_hist["loss"], rtol=1e-10)
        np.testing.assert_allclose(hist["accuracy"], want_hist["accuracy"], rtol=1e-12)
    for got, _ in results[1:]:  # every rank adds in the same order: bit-identical parameters
        for a, b in zip(got, results[0][0], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", RANKS)
def test_synced_batchnorm_conv_with_empty_shares(make_backend_for, size):
    # 26 examples in batches of 8: the last batch has 2 examples, so on 3 and 4 ranks some ranks
    # hold none (a last batch of 1 would join the batch before it)
    train = _fit(make_backend_for, lambda be: conv(be, "CrossEntropy(reduction='mean')"),
                 "image", 26, epochs=2, batch_size=8)
    (want, _), = run(1, train)
    for got, _ in run(size, train):
        assert_same_run(got, want)


@pytest.mark.parametrize("size", RANKS)
def test_model_switch_syncs_batchnorm1d(make_backend_for, size):
    def build(be):
        return dense(be, "CrossEntropy(reduction='mean')", sync=False).sync_batchnorm()

    # batches of 8: every rank gets at least 2 examples, which unsynchronized statistics need
    train = _fit(make_backend_for, build, "class", 24, epochs=2, batch_size=8)
    (want, _), = run(1, train)
    for got, _ in run(size, train):
        assert_same_run(got, want)
    # each rank's own statistics give another run
    unsynced = _fit(make_backend_for, lambda be: dense(be, "CrossEntropy(reduction='mean')",
                                                       sync=False), "class", 24, epochs=2,
                    batch_size=8)
    (got, _), *_ = run(size, unsynced)
    with pytest.raises(AssertionError, match="relative error"):
        assert_same_run(got, want)


@pytest.mark.parametrize("size", RANKS)
def test_deterministic_dropout_and_accumulation(make_backend_for, size):
    def build(be):
        return dense(be, "CrossEntropy(reduction='mean')", p=0.4)

    train = _fit(make_backend_for, build, "class", 29, epochs=2, batch_size=5, accumulate=3,
                 deterministic=True)
    (want, _), = run(1, train)
    for got, _ in run(size, train):
        assert_same_run(got, want)


@pytest.mark.parametrize("size", RANKS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_set_rewiring_with_deterministic_dropout(make_backend_for, size, reduction):
    train = _fit(make_backend_for, lambda be: sparse(be, f"SquaredError(reduction={reduction!r})"),
                 "regression", 22, epochs=3, batch_size=6, deterministic=True)
    (want, _), = run(1, train)
    for got, _ in run(size, train):
        assert_same_run(got, want)


def test_accumulation_equals_a_larger_batch(make_backend_for):
    # without batch statistics, 3 accumulated batches of 4 are one batch of 12 (for a mean loss)
    def build(be):
        from anyml import Sequential
        from anyml.layers import FullyConnected

        return Sequential([FullyConnected(4, act_fn="Tanh", optimizer="SGD(lr=0.1)", backend=be),
                           FullyConnected(2, optimizer="SGD(lr=0.1)", backend=be)],
                          loss="SquaredError(reduction='mean')")

    X, y = data("regression", 24)
    models = []
    for batch, acc in ((4, 3), (12, 1)):
        model = build(make_backend_for(seed=5))
        model.fit(X, y, epochs=1, batch_size=batch, accumulate=acc, shuffle=False, verbose=False)
        models.append(params(model))
    assert_same_run(models[0], models[1])
    # and on 3 ranks
    def train(comm):
        model = build(make_backend_for(seed=5))
        model.fit(X, y, epochs=1, batch_size=4, accumulate=3, shuffle=False, verbose=False, comm=comm)
        return params(model)

    for got in run(3, train):
        assert_same_run(got, models[1])


def test_per_rank_dropout_differs_but_parameters_agree(make_backend_for):
    X, y = data("class", 16)
    make_backend_for()
    masks = []

    def train(comm):
        model = dense(make_backend_for(seed=3), p=0.5)
        model.fit(X, y, epochs=1, batch_size=16, verbose=False, comm=comm)
        model.train()
        return params(model)

    results = run(2, train)
    for a, b in zip(results[0], results[1], strict=True):
        np.testing.assert_array_equal(a, b)
    # the same run with deterministic masks differs from the per-rank one
    det = run(2, _fit(make_backend_for, lambda be: dense(be, p=0.5), "class", 16, epochs=1,
                      batch_size=16, deterministic=True))
    assert any(not np.array_equal(a, b) for a, b in zip(results[0], det[0][0], strict=True))
    del masks


def test_unseeded_ranks_start_from_rank0(make_backend_for, monkeypatch):
    # no seed: every rank draws different initial weights and epoch orders; fit makes them rank 0's
    import threading

    from anyml._training import Data

    X, y = data("class", 12)
    make_backend_for()
    orders: dict[int, list[list[int]]] = {}
    batch = Data.batch

    def recorded(self, order, start, size):  # note each epoch's order, per rank (thread)
        seen = orders.setdefault(threading.get_ident(), [])
        if order is not None and (not seen or seen[-1] != order.tolist()):
            seen.append(order.tolist())
        return batch(self, order, start, size)

    monkeypatch.setattr(Data, "batch", recorded)

    def train(comm):
        model = dense(make_backend_for(seed=None))
        model.fit(X, y, epochs=2, batch_size=4, verbose=False, comm=comm)
        return params(model), orders[threading.get_ident()]

    results = run(3, train)
    assert len(results[0][1]) == 2
    for other, epoch_orders in results[1:]:
        assert epoch_orders == results[0][1]  # the first epoch's order too
        for a, b in zip(other, results[0][0], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [2, 3])
def test_evaluate_and_predict_split_the_work(make_backend_for, size):
    X, y = data("class", 11)
    make_backend_for()

    def job(comm):
        model = dense(make_backend_for(seed=3))
        model.fit(X, y, epochs=1, batch_size=11, verbose=False, comm=comm)
        out = model.predict(X, batch_size=2, comm=comm)
        return model.evaluate(X, y, batch_size=3, comm=comm), np.asarray(model.backend.to_host(out))

    (want_eval, want_pred), = run(1, job)
    for got_eval, got_pred in run(size, job):
        np.testing.assert_allclose(got_pred, want_pred, rtol=1e-12, atol=1e-14)
        assert got_eval.keys() == want_eval.keys()
        for key in want_eval:
            np.testing.assert_allclose(got_eval[key], want_eval[key], rtol=1e-12)


def test_a_failing_rank_ends_every_rank(make_backend_for):
    X, y = data("class", 12)
    make_backend_for()

    def train(comm):
        model = dense(make_backend_for(seed=3))
        bad = y.copy()
        if comm.rank == 1:
            bad[:] = 7  # out of range on this rank only
        model.fit(X, bad, epochs=1, batch_size=6, verbose=False, comm=comm)

    with pytest.raises(ValueError, match="class labels"):
        ThreadGroup(3, timeout=30).run(train)


def test_other_ranks_see_the_abort():
    seen = []

    def job(comm):
        if comm.rank == 0:
            raise RuntimeError("boom")
        try:
            comm.barrier()
        except AbortedError as exc:
            seen.append(str(exc))
            raise

    with pytest.raises(RuntimeError, match="boom"):
        ThreadGroup(3, timeout=30).run(job)
    assert len(seen) == 2 and all("rank 0 of 3 failed: RuntimeError: boom" in s for s in seen)
