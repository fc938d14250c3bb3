"""Checkpoints written by ``fit`` resume the same run: a 2-rank run stopped mid-epoch continues on 3
ranks (or 1) and ends with the parameters of an uninterrupted run, to 1e-10."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import anyml
from anyml.distributed import resume as resume_mod
from tests.distributed._models import assert_same_run, data, params, run


def build(be):
    from anyml import Sequential
    from anyml.layers import BatchNorm1D, FullyConnected, Softmax, SparseEvolution
    from anyml.wrappers import Dropout

    return Sequential([SparseEvolution(8, epsilon=2, act_fn="ReLU", optimizer="Adam(lr=0.02)",
                                       backend=be),
                       BatchNorm1D(sync=True, optimizer="Adam(lr=0.02)", backend=be),
                       Dropout(FullyConnected(3, optimizer="Adam(lr=0.02, lr_scheduler="
                                                            "'ExponentialScheduler(decay=0.9)')",
                                              backend=be), 0.3),
                       Softmax(backend=be)], loss="CrossEntropy(reduction='mean')")


@pytest.mark.parametrize("resume_on", [3, 1])
def test_two_rank_checkpoint_resumes_on_other_sizes(make_backend_for, tmp_path, monkeypatch,
                                                    resume_on, backend_id):
    if backend_id in ("gpulike", "cupy"):
        pytest.xfail("CuPy's RandomState has no state to save: the dropout masks after a resume "
                     "come from a reseeded generator (get_rng_state returns None)")
    X, y = data("class", 26)
    make_backend_for()
    kwargs = {"batch_size": 6, "accumulate": 1, "deterministic": True, "verbose": False}

    def uninterrupted(comm):
        model = build(make_backend_for(seed=4))
        history = model.fit(X, y, epochs=3, comm=comm, **kwargs)
        return params(model), history

    (want, want_history), = run(1, uninterrupted)

    # a 2-rank run saves every 2 batches; keep the file written 2 batches into the second epoch
    path, mid = tmp_path / "run.safetensors", tmp_path / "mid.safetensors"
    save = resume_mod.Checkpointer.save

    def snapshot(self, epoch, step, history):
        save(self, epoch, step, history)
        if (epoch, step) == (1, 2) and self.comm.rank == 0:
            shutil.copy(path, mid)

    monkeypatch.setattr(resume_mod.Checkpointer, "save", snapshot)

    def first_part(comm):
        model = build(make_backend_for(seed=4))
        model.fit(X, y, epochs=2, comm=comm, checkpoint=path, checkpoint_every=2, **kwargs)

    run(2, first_part)
    meta = anyml.load(mid).checkpoint_metadata
    assert (meta["world_size"], meta["epoch"], meta["step"]) == (2, 1, 2)

    def second_part(comm):
        model = build(make_backend_for(seed=99))  # other initial weights: the checkpoint wins
        history = model.fit(X, y, epochs=3, comm=comm, checkpoint=mid, **kwargs)
        return params(model), history

    for got, history in run(resume_on, second_part):
        assert_same_run(got, want)
        np.testing.assert_allclose(history["loss"][0], want_history["loss"][0], rtol=1e-10)
        assert len(history["loss"]) == 3
        np.testing.assert_allclose(history["loss"][2], want_history["loss"][2], rtol=1e-10)
    # the file now holds the end of the run
    meta = anyml.load(mid).checkpoint_metadata
    assert (meta["world_size"], meta["epoch"], meta["step"]) == (resume_on, 3, 0)


def test_resume_refuses_another_global_batch(make_backend_for, tmp_path):
    X, y = data("class", 12)
    be = make_backend_for(seed=1)
    path = tmp_path / "run.safetensors"
    build(be).fit(X, y, epochs=1, batch_size=4, checkpoint=path, verbose=False)
    with pytest.raises(ValueError, match="batch_size=4, this one has batch_size=6"):
        build(make_backend_for(seed=1)).fit(X, y, epochs=2, batch_size=6, checkpoint=path,
                                            verbose=False)
    plain = build(make_backend_for(seed=1))
    plain.fit(X, y, epochs=1, batch_size=4, verbose=False)
    anyml.save(plain, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="without a training position"):
        build(make_backend_for(seed=1)).fit(X, y, batch_size=4, checkpoint=tmp_path / "plain.safetensors",
                                            verbose=False)
