"""Forward + backward timings of Conv2D, Conv1D, Deconv2D and Pool2D against PyTorch's own CPU ops.

Both sides run in float32 in the same process; each number is the median of ``--repeat`` timed runs
after ``--warmup`` untimed ones. Run::

    python benchmarks/bench_conv.py [--backend numpy] [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import anyml
from anyml.layers.conv import Conv1D, Conv2D, Deconv2D
from anyml.layers.pool import Pool2D

F = torch.nn.functional


def _median_ms(fns: list[Callable[[], Any]], warmup: int, repeat: int) -> list[float]:
    """Median milliseconds of each function; the runs interleave so both see the same machine load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]


def _anyml_step(layer: Any, X: Any, dY: Any) -> Callable[[], None]:
    def step() -> None:
        layer.forward(X)
        layer.backward(dY)
        layer.flush_gradients()

    return step


def _torch_step(op: Callable[..., torch.Tensor], X: torch.Tensor, dY: torch.Tensor,
                params: list[torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        for p in (X, *params):
            p.grad = None
        op(X, *params).backward(dY)

    return step


def _cases(be: anyml.Backend) -> list[tuple[str, Any, tuple, Any, Any]]:
    """(name, anyml layer, channels-last input shape, torch op, torch parameter builder)."""
    return [
        ("Conv2D 32x32x32x16->32 3x3 same", Conv2D(32, (3, 3), pad="same", backend=be),
         (32, 32, 32, 16), lambda x, w, b: F.conv2d(x, w, b, padding=1),
         lambda P: [P["W"].permute(3, 2, 0, 1), P["b"]]),
        ("Conv1D 32x256x16->32 k5", Conv1D(32, 5, backend=be), (32, 256, 16),
         lambda x, w, b: F.conv1d(x, w, b),
         lambda P: [P["W"].permute(2, 1, 0), P["b"]]),
        ("Deconv2D 32x16x16x16->16 3x3 s2", Deconv2D(16, (3, 3), stride=2, backend=be),
         (32, 16, 16, 16), lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2),
         lambda P: [P["W"].permute(2, 3, 0, 1), P["b"]]),
        ("Pool2D max 4x32x32x16 2x2 s2", Pool2D((2, 2), stride=2, backend=be), (4, 32, 32, 16),
         lambda x: F.max_pool2d(x, 2, 2), lambda P: []),
        ("Pool2D avg 4x32x32x16 2x2 s2", Pool2D((2, 2), stride=2, mode="average", backend=be),
         (4, 32, 32, 16), lambda x: F.avg_pool2d(x, 2, 2), lambda P: []),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="anyml backend (default numpy)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    be = anyml.make_backend(args.backend, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    print(f"anyml backend: {be!r}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':36s} {'anyml ms':>9s} {'torch ms':>9s} {'ratio':>6s}")
    for name, layer, shape, op, torch_params in _cases(be):
        host = rng.standard_normal(shape).astype(np.float32)
        X = be.asarray(host)
        Y = layer.forward(X)
        dY_host = rng.standard_normal(tuple(Y.shape)).astype(np.float32)
        dY = be.asarray(dY_host)
        layer.backward(dY)

        # torch's own op on channels-first tensors, with the same weights
        host_params = {k: torch.tensor(anyml.to_numpy(v)) for k, v in layer.parameters.items()}
        tparams = [p.contiguous().requires_grad_() for p in torch_params(host_params)]
        perm = (0, 3, 1, 2) if len(shape) == 4 else (0, 2, 1)
        tX = torch.tensor(host).permute(*perm).contiguous().requires_grad_()
        tdY = torch.tensor(dY_host).permute(*perm).contiguous()
        ours, theirs = _median_ms([_anyml_step(layer, X, dY), _torch_step(op, tX, tdY, tparams)],
                                  args.warmup, args.repeat)
        print(f"{name:36s} {ours:9.2f} {theirs:9.2f} {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
