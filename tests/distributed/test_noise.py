"""Per-example noise (dropout, attention dropout, RBM samples) under a data-parallel split."""

from __future__ import annotations

import numpy as np

from anyml.distributed.noise import ExampleSplit, draw, example_split
from anyml.distributed.training import shard
from anyml.layers import RBM, DotProductAttention


def test_deterministic_draws_are_rows_of_the_global_draw(make_backend_for):
    total = 7
    whole = make_backend_for(seed=2)
    want_mask = whole.to_host(draw(whole, "bernoulli", (total, 3), 0.5))
    want_u = whole.to_host(draw(whole, "uniform", (total, 2)))
    for size in (2, 3):
        for rank in range(size):
            be = make_backend_for(seed=2)
            lo, hi = shard(total, rank, size)
            with example_split(ExampleSplit(be, lo, hi, total, True, None)):
                mask = be.to_host(draw(be, "bernoulli", (hi - lo, 3), 0.5))
                u = be.to_host(draw(be, "uniform", (hi - lo, 2)))
            np.testing.assert_array_equal(mask, want_mask[lo:hi])
            np.testing.assert_array_equal(u, want_u[lo:hi])


def test_per_rank_draws_leave_the_shared_generator_alone(make_backend_for):
    be, twin = make_backend_for(seed=2), make_backend_for(seed=2)
    own = make_backend_for(seed=11).rng
    with example_split(ExampleSplit(be, 0, 4, 8, False, own)):
        draw(be, "bernoulli", (4, 3), 0.5)
    # the shared stream did not move: SET rewiring and the epoch order stay in step across ranks
    np.testing.assert_array_equal(be.to_host(be.rng.uniform((5,))), twin.to_host(twin.rng.uniform((5,))))


def test_layers_draw_through_the_split(make_backend_for):
    # attention dropout and RBM sampling take their rows of the global batch's draw
    total, lo, hi = 6, 2, 5
    whole, part = make_backend_for(seed=3), make_backend_for(seed=3)
    host = np.random.default_rng(0)
    Q = whole.asarray(host.normal(size=(total, 2, 4)))
    att_whole = DotProductAttention(dropout_p=0.5, backend=whole)
    att_part = DotProductAttention(dropout_p=0.5, backend=part)
    Qp = part.asarray(whole.to_host(Q)[lo:hi])
    att_whole.forward(Q, Q, Q)
    with example_split(ExampleSplit(part, lo, hi, total, True, None)):
        att_part.forward(Qp, Qp, Qp)
    np.testing.assert_array_equal(part.to_host(att_part.derived_variables["dropout_mask"][0]),
                                  whole.to_host(att_whole.derived_variables["dropout_mask"][0])[lo:hi])
    V = whole.asarray((host.random((total, 5)) < 0.5).astype(float))
    Vp = part.asarray(whole.to_host(V)[lo:hi])
    rbm_whole, rbm_part = RBM(3, K=2, backend=whole), RBM(3, K=2, backend=part)
    rbm_whole.forward(V)
    with example_split(ExampleSplit(part, lo, hi, total, True, None)):
        rbm_part.forward(Vp)
    for got, want in zip(rbm_part.derived_variables["H_samples"][0],
                         rbm_whole.derived_variables["H_samples"][0], strict=True):
        np.testing.assert_array_equal(part.to_host(got), whole.to_host(want)[lo:hi])
