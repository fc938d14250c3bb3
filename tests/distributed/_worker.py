"""A training script run by the real-process tests, unchanged under ``python``, ``mpiexec`` and
``torchrun``: ``python _worker.py OUT.npz [--fail-rank R] [--engine E] [--backend B] [--device D]``.

Rank 0 writes the trained parameters and the history to ``OUT.npz``; with ``--fail-rank R`` rank
``R`` raises in the middle of training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's anyml and tests

import anyml
from anyml import distributed
from tests.distributed._models import conv, data, params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    comm = distributed.init(args.engine)
    be = anyml.make_backend(args.backend, device=args.device, dtype="float64", seed=3)
    model = conv(be, "CrossEntropy(reduction='mean')")
    X, y = data("image", 27)
    if comm.rank == args.fail_rank:
        y = y.copy()
        y[-1] = 99  # a label out of range, seen on this rank only
        Path(args.out + ".failed_at").write_text(repr(time.time()))
    history = model.fit(X, y, epochs=2, batch_size=8, verbose=False, deterministic=True)
    if comm.rank == 0:
        arrays = {f"p{i}": a for i, a in enumerate(params(model))}
        np.savez(args.out, loss=np.asarray(history["loss"]), size=np.asarray(comm.size),
                 engine=np.asarray(comm.name), **arrays)
    comm.barrier()


if __name__ == "__main__":
    main()
