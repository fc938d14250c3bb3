"""Data-parallel training over MPI: time per epoch of the digits CNN on 1 and 2 processes, and the
share of it spent in communication.

    python benchmarks/bench_distributed.py [--procs 1 2] [--epochs 4] [--batch-size 64]

The driver starts ``mpiexec -n P python -m mpi4py`` on this script for each ``P`` (one BLAS thread
per process, so that ``P`` processes use ``P`` cores) and prints, per ``P``: the median seconds per
epoch (after a first, warm-up epoch), the seconds per epoch inside collective operations on rank 0
(gradient sums, synchronized batch-norm statistics, the epoch's totals; this includes waiting for the
slower rank), that share of the epoch, and the speed-up over one process. ``--json`` writes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class TimedComm:
    """A communicator that forwards to another and adds up the seconds spent in collectives."""

    def __init__(self, inner: Any) -> None:
        from anyml.distributed.base import Communicator

        class _Timed(Communicator):
            name = inner.name
            rank, size, local_rank = inner.rank, inner.size, inner.local_rank
            seconds = 0.0

            def _time(self, fn: Any, *args: Any) -> Any:
                start = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    type(self).seconds += time.perf_counter() - start

            def allreduce_async(self, arrays: Sequence[Any]) -> Any:
                handle = self._time(inner.allreduce_async, arrays)
                wait = handle.wait
                handle.wait = lambda: self._time(wait)
                return handle

            def broadcast(self, arrays: Sequence[Any], root: int = 0) -> Any:
                return self._time(inner.broadcast, arrays, root)

            def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
                return self._time(inner.broadcast_bytes, data, root)

            def allgather_bytes(self, data: bytes) -> list[bytes]:
                return self._time(inner.allgather_bytes, data)

            def barrier(self) -> None:
                self._time(inner.barrier)

            def abort(self, code: int = 1, error: BaseException | None = None) -> Any:
                inner.abort(code, error)

        self.comm = _Timed()


def worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    import digits_cnn

    import anyml
    from anyml import distributed

    comm = TimedComm(distributed.init()).comm
    distributed.set_comm(comm)
    be = anyml.make_backend("numpy", dtype="float32", seed=0)
    X, y, _, _ = digits_cnn.load_data()
    model = digits_cnn.build_model(be, 0.003).sync_batchnorm(not args.local_bn)
    epoch_s: list[float] = []
    comm_s: list[float] = []
    marks = [time.perf_counter(), type(comm).seconds]

    def lap(epoch: int, logs: dict[str, float]) -> None:
        now, spent = time.perf_counter(), type(comm).seconds
        epoch_s.append(now - marks[0])
        comm_s.append(spent - marks[1])
        marks[:] = [now, spent]

    model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=False, callbacks=[lap])
    if comm.rank == 0:
        timed = slice(1, None) if len(epoch_s) > 1 else slice(None)
        print("RESULT " + json.dumps({"procs": comm.size, "epoch_s": statistics.median(epoch_s[timed]),
                                      "comm_s": statistics.median(comm_s[timed]),
                                      "epochs": epoch_s, "n_train": int(X.shape[0])}), flush=True)


def driver(args: argparse.Namespace) -> list[dict[str, Any]]:
    local = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(local) if local.exists() else "mpiexec"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    rows = []
    for procs in args.procs:
        cmd = [mpiexec, "-n", str(procs), sys.executable, "-m", "mpi4py", __file__, "--worker",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               *(["--local-bn"] if args.local_bn else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            sys.exit(f"bench_distributed: {procs} process(es) failed:\n{done.stdout}{done.stderr}")
        rows.append(json.loads(line[len("RESULT "):]))
    base = rows[0]["epoch_s"] if rows and rows[0]["procs"] == 1 else None
    print(f"digits CNN (float32, NumPy), {rows[0]['n_train']} images, global batch "
          f"{args.batch_size}, MPI, one BLAS thread per process")
    print(f"{'processes':>9} {'s/epoch':>8} {'comm s':>7} {'comm %':>7} {'speed-up':>8}")
    for row in rows:
        share = 100 * row["comm_s"] / row["epoch_s"]
        speed = f"{base / row['epoch_s']:.2f}x" if base else "-"
        print(f"{row['procs']:>9} {row['epoch_s']:>8.2f} {row['comm_s']:>7.2f} {share:>6.1f}% "
              f"{speed:>8}")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--local-bn", action="store_true",
                   help="batch normalization on each rank's share (no synchronized statistics)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    rows = driver(args)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
