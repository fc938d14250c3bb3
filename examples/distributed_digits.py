"""The digits CNN trained data-parallel: the same script on one process or on several.

    python examples/distributed_digits.py
    mpiexec -n 2 python -m mpi4py examples/distributed_digits.py
    torchrun --nproc-per-node=2 examples/distributed_digits.py

``anyml.distributed.init()`` reads the launcher from the environment (nothing for a plain
``python``, MPI for ``mpiexec``/``srun``, ``torch.distributed`` with gloo for ``torchrun``); ``fit``
then splits every global batch of ``--batch-size`` examples across the processes, sums the gradients
and applies the same update everywhere. Batch normalization is synchronized (statistics of the
global batch), so with ``--dtype float64`` every run gives the same model as one process, to
rounding. Only rank 0 prints. ``python -m mpi4py`` makes an error on any rank end the whole job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import digits_cnn

from anyml import distributed


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = _common.parser(__doc__.splitlines()[0], epochs=15, batch_size=32, lr=0.003)
    p.add_argument("--limit", type=int, default=None,
                   help="use at most this many training (and test) images, for a quick run")
    p.add_argument("--engine", choices=distributed.launch.ENGINES, default="auto",
                   help="the communication engine ('auto': from the launcher)")
    args = p.parse_args(argv)
    comm = distributed.init(args.engine)  # before the backend: a CUDA backend takes this rank's GPU
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say(f"{comm.size} process(es), engine {comm.name}")
    be = _common.backend_from(args) if comm.rank == 0 else _quiet_backend(args)
    X_train, y_train, X_test, y_test = digits_cnn.load_data(args.limit)
    model = digits_cnn.build_model(be, args.lr).sync_batchnorm()
    start = time.perf_counter()
    model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              validation_data=(X_test, y_test), verbose=not args.no_progress)
    seconds = time.perf_counter() - start
    scores = model.evaluate(X_test, y_test, batch_size=256)  # each rank a share, then summed
    say(f"trained in {seconds:.1f} s ({args.epochs * len(X_train) / seconds:.0f} examples/s on "
        f"{comm.size} process(es)); test accuracy {scores['accuracy']:.2%} "
        f"(loss {scores['loss']:.4f})")
    return {"accuracy": scores["accuracy"], "loss": scores["loss"], "seconds": seconds,
            "size": comm.size}


def _quiet_backend(args):
    import anyml

    return anyml.make_backend(args.backend, dtype=args.dtype, seed=args.seed)


if __name__ == "__main__":
    main()
