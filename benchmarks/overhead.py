"""Per-call overhead of small layers at batch 1: what anyml costs beyond the array work.

At batch 1 a layer's forward + backward does almost no arithmetic, so its time is mostly Python:
argument checks, namespace look-ups, cache bookkeeping, gradient accumulation. For each case this
times anyml's ``forward`` + ``backward`` + ``flush_gradients`` on the NumPy backend and a minimal
hand-written NumPy function doing the same arithmetic (the *array work*: the forward output, every
gradient, the same activation), and reports the difference, per call, in microseconds. PyTorch's
own forward + backward of the same operation is listed for scale (its autograd also has a per-call
cost). Both anyml and the reference run in alternating blocks (see ``_timing.compare``); the
overhead is the median over rounds of the per-round difference.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/overhead.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _timing import compare  # benchmarks/ is on the path when run as a script

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API

Step = Callable[[], object]
Builder = Callable[[anyml.Backend, np.random.Generator], tuple[Step, Step, Step]]
#: name -> builder of (anyml step, NumPy reference step, PyTorch step)
CASES: dict[str, Builder] = {}

#: The budget per small layer that the table is measured against, in microseconds.
TARGET_US = 30.0


def case(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        CASES[name] = fn
        return fn
    return register


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _layer_step(layer: Any, X: Any, dY: Any) -> Step:
    def step() -> tuple[Any, Any]:
        Y = layer.forward(X)
        dX = layer.backward(dY)
        layer.flush_gradients()
        return Y, dX  # the tests compare these with the reference's first two results
    return step


def _torch_step(fn: Callable[..., Any], inputs: list[Any], dY: Any, params: tuple[Any, ...] = ()) -> Step:
    def step() -> None:
        fn(*inputs).backward(dY)
        for t in (*inputs, *params):
            t.grad = None
    return step


def _torch(*arrays: np.ndarray, grad: bool = True) -> Any:
    import torch

    out = [torch.tensor(np.ascontiguousarray(a)).requires_grad_(grad) for a in arrays]
    return out if len(out) > 1 else out[0]


@case("FullyConnected 64->64, ReLU")
def _fc(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    X, dY = _f32(rng, 1, 64), _f32(rng, 1, 64)
    layer = L.FullyConnected(64, act_fn="ReLU", backend=be)
    layer.forward(be.asarray(X), retain_derived=False)
    W, b = (np.array(anyml.to_numpy(layer.parameters[k])) for k in ("W", "b"))

    def ref() -> tuple[np.ndarray, ...]:
        Z = X @ W + b
        Y = np.maximum(Z, 0)
        dZ = np.where(Z > 0, dY, 0)
        return Y, dZ @ W.T, X.T @ dZ, dZ.sum(axis=0)

    import torch

    Xt, Wt, bt = _torch(X, W, b)
    theirs = _torch_step(lambda x: torch.relu(torch.addmm(bt, x, Wt)), [Xt], _torch(dY, grad=False), (Wt, bt))
    return _layer_step(layer, be.asarray(X), be.asarray(dY)), ref, theirs


@case("Conv2D 8x8x4->8, 3x3 same, ReLU")
def _conv(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    X, dY = _f32(rng, 1, 8, 8, 4), _f32(rng, 1, 8, 8, 8)
    layer = L.Conv2D(8, (3, 3), pad="same", act_fn="ReLU", backend=be)
    layer.forward(be.asarray(X), retain_derived=False)
    W, b = (np.array(anyml.to_numpy(layer.parameters[k])) for k in ("W", "b"))
    W2 = W.reshape(-1, 8)
    Wflip2 = np.ascontiguousarray(np.transpose(W[::-1, ::-1], (0, 1, 3, 2)).reshape(-1, 4))
    # the padded 10x10 grid's flat index of every (output position, tap, channel): one gather each
    pos = (np.arange(8)[:, None] * 10 + np.arange(8)).reshape(-1, 1, 1)
    taps = (np.arange(3)[:, None] * 10 + np.arange(3)).reshape(1, -1, 1)
    x_idx = ((pos + taps) * 4 + np.arange(4)).reshape(64, -1)
    g_idx = ((pos + taps) * 8 + np.arange(8)).reshape(64, -1)
    Xp, Gp = np.zeros((10, 10, 4), np.float32), np.zeros((10, 10, 8), np.float32)

    # im2col by one fancy-index gather; the input gradient as a convolution of dZ
    def ref() -> tuple[np.ndarray, ...]:
        Xp[1:9, 1:9] = X[0]
        cols = Xp.reshape(-1)[x_idx]
        Z = cols @ W2 + b
        Y = np.maximum(Z, 0)
        dZ = np.where(Z > 0, dY.reshape(64, 8), 0)
        Gp[1:9, 1:9] = dZ.reshape(8, 8, 8)
        dX = Gp.reshape(-1)[g_idx] @ Wflip2
        return Y.reshape(1, 8, 8, 8), dX.reshape(1, 8, 8, 4), cols.T @ dZ, dZ.sum(axis=0)

    import torch

    F = torch.nn.functional
    Xt = _torch(np.moveaxis(X, -1, 1))
    Wt, bt = _torch(np.transpose(W, (3, 2, 0, 1)), b)
    theirs = _torch_step(lambda x: torch.relu(F.conv2d(x, Wt, bt, padding=1)), [Xt],
                         _torch(np.moveaxis(dY, -1, 1), grad=False), (Wt, bt))
    return _layer_step(layer, be.asarray(X), be.asarray(dY)), ref, theirs


@case("Pool2D max 8x8x4, 2x2")
def _pool(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    X, dY = _f32(rng, 1, 8, 8, 4), _f32(rng, 1, 4, 4, 4)
    layer = L.Pool2D((2, 2), stride=2, backend=be)

    def ref() -> tuple[np.ndarray, ...]:
        X6 = X.reshape(1, 4, 2, 4, 2, 4)
        Y = X6.max(axis=(2, 4))
        hit = Y[:, :, None, :, None, :] == X6
        return Y, (hit * dY[:, :, None, :, None, :]).reshape(X.shape)

    import torch

    F = torch.nn.functional
    theirs = _torch_step(lambda x: F.max_pool2d(x, 2, 2), [_torch(np.moveaxis(X, -1, 1))],
                         _torch(np.moveaxis(dY, -1, 1), grad=False))
    return _layer_step(layer, be.asarray(X), be.asarray(dY)), ref, theirs


@case("LayerNorm1D 64")
def _ln(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    X, dY = _f32(rng, 1, 64), _f32(rng, 1, 64)
    layer = L.LayerNorm1D(backend=be)
    layer.forward(be.asarray(X), retain_derived=False)
    g, b = np.ones(64, np.float32), np.zeros(64, np.float32)

    def ref() -> tuple[np.ndarray, ...]:
        mu = X.mean(axis=1, keepdims=True)
        xc = X - mu
        inv = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + 1e-5)
        xhat = xc * inv
        Y = g * xhat + b
        dxhat = dY * g
        dX = inv * (dxhat - dxhat.mean(axis=1, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
        return Y, dX, (dY * xhat).sum(axis=0), dY.sum(axis=0)

    import torch

    F = torch.nn.functional
    gt, bt = _torch(g, b)
    theirs = _torch_step(lambda x: F.layer_norm(x, (64,), gt, bt), [_torch(X)], _torch(dY, grad=False),
                         (gt, bt))
    return _layer_step(layer, be.asarray(X), be.asarray(dY)), ref, theirs


@case("Softmax 10")
def _softmax(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    X, dY = _f32(rng, 1, 10), _f32(rng, 1, 10)

    def ref() -> tuple[np.ndarray, ...]:
        e = np.exp(X - X.max(axis=-1, keepdims=True))
        Y = e / e.sum(axis=-1, keepdims=True)
        return Y, Y * (dY - (dY * Y).sum(axis=-1, keepdims=True))

    import torch

    theirs = _torch_step(lambda x: torch.softmax(x, dim=-1), [_torch(X)], _torch(dY, grad=False))
    return _layer_step(L.Softmax(backend=be), be.asarray(X), be.asarray(dY)), ref, theirs


@case("Add of 2, 64")
def _add(be: anyml.Backend, rng: np.random.Generator) -> tuple[Step, Step, Step]:
    A, B, dY = _f32(rng, 1, 64), _f32(rng, 1, 64), _f32(rng, 1, 64)
    layer = L.Add(backend=be)

    def ref() -> tuple[np.ndarray, ...]:
        return A + B, dY.copy(), dY.copy()

    theirs = _torch_step(lambda a, b: a + b, list(_torch(A, B)), _torch(dY, grad=False))
    return _layer_step(layer, [be.asarray(A), be.asarray(B)], be.asarray(dY)), ref, theirs


def run(names: list[str], rounds: int, repeats: int) -> list[dict]:
    be = anyml.make_backend("numpy", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    rows = []
    for name in names:
        ours, ref, theirs = CASES[name](be, rng)
        ours_r, ref_r, torch_r = compare([ours, ref, theirs], warmup=20, repeats=repeats, rounds=rounds,
                                         pause=0.05)
        overhead = 1e3 * statistics.median(a - r for a, r in zip(ours_r, ref_r, strict=True))
        row = {"layer": name, "anyml_us": 1e3 * statistics.median(ours_r),
               "array_work_us": 1e3 * statistics.median(ref_r), "overhead_us": overhead,
               "torch_us": 1e3 * statistics.median(torch_r)}
        rows.append(row)
        print(f"{name:>32}  {row['anyml_us']:8.1f}  {row['array_work_us']:10.1f}  {overhead:11.1f}  "
              f"{row['torch_us']:8.1f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    print(f"{'batch 1, forward + backward':>32}  {'anyml us':>8}  {'array work':>10}  "
          f"{'overhead us':>11}  {'torch us':>8}")
    rows = run(names, args.rounds, args.repeats)
    summary = {"rows": rows, "target_us": TARGET_US,
               "over_target": [r["layer"] for r in rows if r["overhead_us"] > TARGET_US]}
    print(f"overhead above {TARGET_US:.0f} us: {summary['over_target'] or 'none'}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
