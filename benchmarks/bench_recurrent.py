"""Time LSTM and RNN forward + backward against torch.nn.LSTM / torch.nn.RNN on the CPU, in one run.

Batch 32, n_in 64, n_out 128, 32 timesteps, float32. Both sides compute the output sequence and the
gradients of the input and of every weight for a given upstream gradient. Each timing is the median
over repeats after a warm-up, and the best such median over several rounds is reported. The two
libraries run in alternating blocks with a short pause between them: switching on every call makes
each library's idle worker threads compete with the other's and distorts both timings. Run:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_recurrent.py [--threads 1]

``--threads N`` limits both libraries to N threads (set before NumPy and PyTorch load), which gives
steadier numbers on a machine shared with other jobs; by default each library keeps its own setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench(kind: str, backend_name: str, n_ex: int, n_in: int, n_out: int, n_t: int, warmup: int,
          repeats: int, rounds: int) -> tuple[float, float]:
    import numpy as np
    import torch

    import anyml
    from anyml.layers.recurrent import LSTM, RNN

    be = anyml.make_backend(backend_name, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    X_host = rng.standard_normal((n_ex, n_in, n_t)).astype(np.float32)
    dY_host = rng.standard_normal((n_ex, n_out, n_t)).astype(np.float32)
    X, dY = be.asarray(X_host), be.asarray(dY_host)
    layer = (LSTM if kind == "LSTM" else RNN)(n_out, backend=be)
    layer.forward(X, retain_derived=False)  # create the parameters

    def ours() -> None:
        layer.forward(X)
        layer.backward(dY)
        layer.flush_gradients()

    module = (torch.nn.LSTM if kind == "LSTM" else torch.nn.RNN)(n_in, n_out, batch_first=True)
    Xt = torch.from_numpy(X_host.transpose(0, 2, 1).copy()).requires_grad_(True)
    dYt = torch.from_numpy(dY_host.transpose(0, 2, 1).copy())

    def theirs() -> None:
        out, _ = module(Xt)
        out.backward(dYt)
        module.zero_grad(set_to_none=False)
        Xt.grad = None

    ours_ms, theirs_ms = [], []
    for _ in range(rounds):
        for fn, out in ((ours, ours_ms), (theirs, theirs_ms)):
            time.sleep(0.3)
            for _ in range(warmup):
                fn()
            out.append(_median_ms(fn, repeats))
    return min(ours_ms), min(theirs_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=64)
    parser.add_argument("--n-out", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        if "numpy" in sys.modules:
            raise SystemExit("--threads must be applied before NumPy is imported")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"anyml backend {args.backend}, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads; batch {args.batch}, n_in {args.n_in}, n_out {args.n_out}, {args.steps} steps, "
          f"float32, forward + backward")
    for kind in ("LSTM", "RNN"):
        ours, theirs = bench(kind, args.backend, args.batch, args.n_in, args.n_out, args.steps,
                             args.warmup, args.repeats, args.rounds)
        print(f"{kind:5s} anyml {ours:8.2f} ms   torch {theirs:8.2f} ms   ratio {ours / theirs:5.2f}")


if __name__ == "__main__":
    main()
