"""What each layer asks of a GPU: kernel launches, host syncs and peak memory, on the emulated device.

Runs every layer of the API (forward, backward, update), the optimizers, the losses, one training
step of the digits CNN, an LSTM timestep, a ``fit`` step and exact GELU on the ``gpulike`` backend
(the CuPy backend on an emulated CUDA device, :mod:`anyml.backend._emulated`), and counts:

- **launches**: kernels the CuPy code path would launch (one per operation that computes into
  memory; views are free);
- **syncs**: reads of device data by the host (each a stall of the GPU's queue);
- **peak**: the most bytes allocated at once above what was live before the forward pass (CuPy's
  memory pool rounds these up and keeps them).

The counts depend on the code path, not on the sizes (except for chunked convolutions), so small
sizes suffice. ``--write`` stores them in ``benchmarks/gpu_census.json`` (as the ``after`` column,
or ``--column before``) and the table in ``benchmarks/GPU_CENSUS.md``; ``tests/test_gpu_census.py``
fails when a count rises above its recorded value.

    python benchmarks/gpu_census.py [--write] [--column after|before] [--device cuda:1]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.backend import Backend

HERE = Path(__file__).resolve().parent
JSON_PATH = HERE / "gpu_census.json"
TABLE_PATH = HERE / "GPU_CENSUS.md"
METRICS = ("launches", "syncs", "peak_bytes")

# name -> (constructor, input spec); the 21 layers of the API
LAYERS: dict[str, tuple[Callable[[Backend], Any], Any]] = {
    "FullyConnected": (lambda be: L.FullyConnected(32, act_fn="ReLU", backend=be), (16, 24)),
    "SparseEvolution": (lambda be: L.SparseEvolution(32, act_fn="ReLU", backend=be), (16, 24)),
    "Conv1D": (lambda be: L.Conv1D(8, 3, pad="same", backend=be), (4, 16, 4)),
    "Conv2D": (lambda be: L.Conv2D(8, (3, 3), pad=1, act_fn="ReLU", backend=be), (4, 8, 8, 4)),
    "Deconv2D": (lambda be: L.Deconv2D(4, (3, 3), stride=2, backend=be), (4, 5, 5, 4)),
    "Pool2D": (lambda be: L.Pool2D((2, 2), stride=2, mode="max", backend=be), (4, 8, 8, 4)),
    "BatchNorm1D": (lambda be: L.BatchNorm1D(backend=be), (16, 24)),
    "BatchNorm2D": (lambda be: L.BatchNorm2D(backend=be), (4, 8, 8, 4)),
    "LayerNorm1D": (lambda be: L.LayerNorm1D(backend=be), (16, 24)),
    "LayerNorm2D": (lambda be: L.LayerNorm2D(backend=be), (4, 8, 8, 4)),
    "Softmax": (lambda be: L.Softmax(backend=be), (16, 24)),
    "Flatten": (lambda be: L.Flatten(backend=be), (4, 8, 8, 4)),
    "Add": (lambda be: L.Add(act_fn="Tanh", backend=be), [(16, 24), (16, 24)]),
    "Multiply": (lambda be: L.Multiply(backend=be), [(16, 24), (16, 24)]),
    "RNNCell": (lambda be: L.RNNCell(16, backend=be), (8, 12)),
    "LSTMCell": (lambda be: L.LSTMCell(16, backend=be), (8, 12)),
    "RNN": (lambda be: L.RNN(16, backend=be), (8, 12, 5)),
    "LSTM": (lambda be: L.LSTM(16, backend=be), (8, 12, 5)),
    "Embedding": (lambda be: L.Embedding(16, vocab_size=50, backend=be), "ids"),
    "DotProductAttention": (lambda be: L.DotProductAttention(backend=be), "qkv"),
    "RBM": (lambda be: L.RBM(16, K=1, backend=be), "visible"),
}

OPTIMIZERS = ("SGD(lr=0.01, momentum=0.9)", "AdaGrad()", "RMSProp()", "Adam()")
LOSSES = ("CrossEntropy()", "SquaredError()")


def _counters(be: Backend) -> Any:
    return be.counters  # type: ignore[attr-defined]


class _Meter:
    """Launches and syncs of a block, and its peak bytes above what was live before the census."""

    def __init__(self, be: Backend) -> None:
        self.c = _counters(be)
        self.c.reset()
        self.base = self.c.live_bytes
        self.mark = (0, 0)

    def take(self) -> dict[str, int]:
        out = {"launches": self.c.launches - self.mark[0], "syncs": self.c.syncs - self.mark[1]}
        self.mark = (self.c.launches, self.c.syncs)
        return out

    def peak(self) -> int:
        return self.c.peak_bytes - self.base


def _inputs(be: Backend, spec: Any, rng: np.random.Generator) -> tuple[Any, ...]:
    if spec == "ids":
        return (be.asarray(rng.integers(0, 50, size=(16, 6)), dtype="int64"),)
    if spec == "qkv":
        return tuple(be.asarray(rng.standard_normal(s)) for s in ((4, 6, 8), (4, 7, 8), (4, 7, 5)))
    if spec == "visible":
        return (be.asarray(rng.uniform(size=(16, 24))),)
    if isinstance(spec, list):
        return ([be.asarray(rng.standard_normal(s)) for s in spec],)
    return (be.asarray(rng.standard_normal(spec)),)


def _grad_like(be: Backend, out: Any, rng: np.random.Generator) -> Any:
    if isinstance(out, tuple):  # LSTMCell: (At, Ct); the gradient is of At
        out = out[0]
    return be.asarray(rng.standard_normal(tuple(out.shape)))


def census_layer(name: str, be: Backend) -> dict[str, int]:
    """Forward, backward and update of one layer, after a warm-up step that builds everything."""
    make, spec = LAYERS[name]
    rng = np.random.default_rng(0)
    layer = make(be)
    inputs = _inputs(be, spec, rng)
    rbm = name == "RBM"
    out = layer.forward(*inputs)
    dY = None if rbm else _grad_like(be, out, rng)
    layer.backward() if rbm else layer.backward(dY)
    layer.update()
    meter = _Meter(be)
    layer.forward(*inputs)
    f = meter.take()
    layer.backward() if rbm else layer.backward(dY)
    b = meter.take()
    peak = meter.peak()
    layer.update()
    u = meter.take()
    return {"forward_launches": f["launches"], "forward_syncs": f["syncs"],
            "backward_launches": b["launches"], "backward_syncs": b["syncs"],
            "update_launches": u["launches"], "update_syncs": u["syncs"], "peak_bytes": peak}


def census_optimizer(spec: str, be: Backend) -> dict[str, int]:
    """One step of an optimizer on one parameter (after a first step that builds its state)."""
    from anyml.optimizers import get_optimizer

    opt = get_optimizer(spec)
    rng = np.random.default_rng(0)
    p, g = be.asarray(rng.standard_normal((32, 16))), be.asarray(rng.standard_normal((32, 16)))
    p = opt(p, g, "W")
    opt.step()
    meter = _Meter(be)
    opt(p, g, "W")
    opt.step()
    s = meter.take()
    return {"launches": s["launches"], "syncs": s["syncs"], "peak_bytes": meter.peak()}


def census_loss(spec: str, be: Backend) -> dict[str, int]:
    """A loss and its gradient on a (16, 10) batch."""
    from anyml.losses import get_loss

    loss = get_loss(spec)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 1.0, size=(16, 10))
    y_pred = be.asarray(p / p.sum(axis=1, keepdims=True))
    y = be.asarray(np.eye(10)[rng.integers(0, 10, 16)])
    loss.loss(y, y_pred)
    loss.grad(y, y_pred)
    meter = _Meter(be)
    loss.loss(y, y_pred)
    loss.grad(y, y_pred)
    s = meter.take()
    return {"launches": s["launches"], "syncs": s["syncs"], "peak_bytes": meter.peak()}


def _digits_model(be: Backend) -> Any:
    sys.path.insert(0, str(HERE.parent / "examples"))
    try:
        from digits_cnn import build_model
    finally:
        sys.path.pop(0)
    return build_model(be, 0.003)


def census_digits_step(be: Backend) -> dict[str, int]:
    """One ``train_on_batch`` of the digits CNN (batch 32 of 8x8 images), data already on the device."""
    model = _digits_model(be)
    rng = np.random.default_rng(0)
    X = be.asarray(rng.uniform(size=(32, 8, 8, 1)))
    y = be.asarray(rng.integers(0, 10, 32), dtype="int64")
    model.train_on_batch(X, y)
    meter = _Meter(be)
    model.train_on_batch(X, y)
    s = meter.take()
    return {"launches": s["launches"], "syncs": s["syncs"], "peak_bytes": meter.peak()}


def census_fit_step(be: Backend, steps: int = 8) -> dict[str, int]:
    """``fit`` on host data, one epoch of ``steps`` minibatches: counts per step (progress off)."""
    model = _digits_model(be)
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(32 * steps, 8, 8, 1)), rng.integers(0, 10, 32 * steps)
    model.fit(X[:32], y[:32], epochs=1, batch_size=32, verbose=False)
    meter = _Meter(be)
    model.fit(X, y, epochs=1, batch_size=32, verbose=False)
    s = meter.take()
    return {"launches": -(-s["launches"] // steps), "syncs": -(-s["syncs"] // steps),
            "peak_bytes": meter.peak()}


def census_fit_transfers(be: Backend, steps: int = 8) -> dict[str, int]:
    """Host-to-device copies of one ``fit`` epoch on host data (digits CNN, ``steps`` minibatches):
    with the data set preloaded (its copy counted apart, once per ``fit``) and streamed."""
    model = _digits_model(be)
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(32 * steps, 8, 8, 1)), rng.integers(0, 10, 32 * steps)
    model.fit(X[:32], y[:32], epochs=1, batch_size=32, verbose=False)
    c = _counters(be)
    out = {}
    for preload in (True, False):
        key = "preloaded" if preload else "streamed"
        c.reset()
        model.fit(X, y, epochs=1, batch_size=32, verbose=False, preload=preload)
        once = c.uploads
        c.reset()
        model.fit(X, y, epochs=2, batch_size=32, verbose=False, preload=preload)
        out[f"{key}_per_epoch"] = c.uploads - once
        out[f"{key}_once"] = 2 * once - c.uploads
        out[f"{key}_pinned_per_epoch"] = c.pinned_uploads // 2
    return out


def census_lstm_timestep(be: Backend) -> dict[str, int]:
    """Launches of one LSTM timestep: the difference between sequences of 6 and 5 steps."""
    counts = {}
    for n_t in (5, 6):
        layer = L.LSTM(16, backend=be)
        rng = np.random.default_rng(0)
        X = be.asarray(rng.standard_normal((8, 12, n_t)))
        Y = layer.forward(X)
        dY = be.asarray(rng.standard_normal(tuple(Y.shape)))
        layer.backward(dY)
        layer.flush_gradients()
        meter = _Meter(be)
        layer.forward(X)
        f = meter.take()
        layer.backward(dY)
        b = meter.take()
        counts[n_t] = (f, b)
    (f5, b5), (f6, b6) = counts[5], counts[6]
    return {"forward_launches": f6["launches"] - f5["launches"],
            "backward_launches": b6["launches"] - b5["launches"],
            "syncs": f6["syncs"] + b6["syncs"]}


def census_gelu(be: Backend) -> dict[str, int]:
    """Exact GELU forward and gradient on a (16, 24) array."""
    from anyml.activations import GELU

    act = GELU(approximate=False)
    z = be.asarray(np.random.default_rng(0).standard_normal((16, 24)))
    with be.activate():
        act(z)
        act.grad(z)
        meter = _Meter(be)
        act(z)
        act.grad(z)
    s = meter.take()
    return {"launches": s["launches"], "syncs": s["syncs"], "peak_bytes": meter.peak()}


def run_census(device: Any = "cuda:1") -> dict[str, dict[str, int]]:
    """Every row of the census, by name."""
    be = anyml.make_backend("gpulike", device=device, seed=0)
    rows: dict[str, dict[str, int]] = {}
    for name in LAYERS:
        rows[name] = census_layer(name, be)
    for spec in OPTIMIZERS:
        rows[f"optimizer {spec}"] = census_optimizer(spec, be)
    for spec in LOSSES:
        rows[f"loss {spec}"] = census_loss(spec, be)
    rows["digits-CNN train_on_batch"] = census_digits_step(be)
    rows["fit step (digits CNN)"] = census_fit_step(be)
    rows["LSTM timestep"] = census_lstm_timestep(be)
    rows["GELU exact"] = census_gelu(be)
    return rows


def _cell(before: Any, after: Any) -> str:
    if before is None:
        return f"{after}"
    if after is None:
        return f"{before} / -"
    return f"{before} / {after}" if before != after else f"{after}"


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown tables, one per kind of row: each count as ``before / after`` (one number where it
    did not change)."""
    rows = after or before
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, row in rows.items():
        groups.setdefault(tuple(row), []).append(name)
    out = []
    for columns, names in groups.items():
        lines = ["| case | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for name in names:
            b, a = before.get(name, {}), after.get(name, {})
            lines.append(f"| {name} | " + " | ".join(_cell(b.get(k), a.get(k)) for k in columns)
                         + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


HEADER = """# GPU census: kernel launches, host syncs and peak memory

Written by `python benchmarks/gpu_census.py --write` on the emulated CUDA device (the `gpulike`
backend: anyml's CuPy backend through array-api-compat's CuPy wrappers on a NumPy-backed stand-in).
Where a number changed, the cell reads `before / after` (before: the code before the device and
launch work; after: now). `tests/test_gpu_census.py` fails when a count rises above the `after`
value in `gpu_census.json`.

Launches count operations that compute into device memory (views are free); syncs count host reads
of device data; `peak_bytes` is the most memory allocated at once above what was live before the
forward pass (forward and backward for a layer). Sizes are small (counts do not depend on them,
except for chunked convolutions): layers at batch 4-16, the digits CNN at batch 32 of 8x8 images.
The LSTM timestep is the difference between 6 and 5 steps.

Since layers keep no idle workspaces on a backend whose library pools memory (`Backend.pools_memory`:
CuPy, torch on CUDA, and so the emulated device), the convolutions' and recurrent layers' scratch
arrays are allocated inside each measured step instead of being held from the step before: their
`peak_bytes` now count memory that earlier sat outside the measurement between steps, and their
zero-filled scratch costs a launch or two per pass.

"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the counts and the table")
    parser.add_argument("--column", choices=("after", "before"), default="after")
    parser.add_argument("--device", default="cuda:1",
                        help="emulated device (cuda:0 is the current one, to count code that does "
                             "not enter the backend's device)")
    args = parser.parse_args(argv)
    rows = run_census(args.device)
    recorded = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    if args.write:
        recorded[args.column] = rows
        JSON_PATH.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    before = recorded.get("before", {}) if args.column == "after" else {}
    after = rows if args.column == "after" else recorded.get("after", rows)
    text = table(before if args.column == "after" else rows, after)
    print(text)
    moves = census_fit_transfers(anyml.make_backend("gpulike", device=args.device, seed=0))
    print(f"\nfit on host data, digits CNN, 8 minibatches: host-to-device copies per epoch "
          f"{moves['preloaded_per_epoch']} preloaded (plus {moves['preloaded_once']} once per fit), "
          f"{moves['streamed_per_epoch']} streamed ({moves['streamed_pinned_per_epoch']} from "
          f"pinned memory)")
    if args.write:
        TABLE_PATH.write_text(HEADER + text + "\n")


if __name__ == "__main__":
    main()
