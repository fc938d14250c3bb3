"""Every layer's forward + backward against the equivalent PyTorch operation, in one run.

For each of the 21 layers of the API (and one training step of the digits CNN) this times anyml on the
chosen backend and PyTorch on the same device, float32, as the median of repeated runs after a warm-up,
and prints a table of milliseconds and ratios (anyml / PyTorch, the median over rounds of the ratio of
two blocks timed back to back; below 1 means anyml is faster). The table is also written as JSON.

PyTorch runs at its best on the same work: where it has several ways to do a case (channels-first or
channels-last images, ``F.linear`` or a matrix product, its fused attention kernel, its fused Adam),
each is timed briefly first and the fastest one is the PyTorch column (its name is in the JSON, with
the others' times); the activation and bias of the anyml layer are in PyTorch's step too, and the
recurrent and normalization layers are PyTorch's fused modules (``nn.LSTM``, ``F.batch_norm``,
``F.layer_norm``). With ``--backend torch`` the anyml column runs on anyml's torch backend, so the
ratio is the cost of anyml's layer code over PyTorch's own on the same tensors.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py [--backend numpy]
    python benchmarks/run.py --backend cupy --gpu-sizes --json benchmarks/results-cupy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _timing import (  # benchmarks/ is on the path when run as a script
    compare,
    layer_summary,
    paired_ratio,
    print_layer_summary,
)

import anyml
from anyml import layers as L  # noqa: N812 - short, reads like the API
from anyml.backend import Backend

Step = Callable[[], object]
#: A case gives anyml's step and PyTorch's: one step, or several ways of doing the same work by name.
CASES: dict[str, Callable[..., tuple[Step, Step | dict[str, Step]]]] = {}


def case(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        CASES[name] = fn
        return fn
    return register


class Ctx:
    """What a case needs: both libraries on one device, host random data, and a batch scale."""

    def __init__(self, be: Backend, torch_device: str, scale: int) -> None:
        import torch

        self.be, self.torch, self.dev, self.scale = be, torch, torch_device, scale
        #: When set, every case runs at this batch size (and recurrent ones over this many steps)
        #: instead of its own size times ``scale`` (``benchmarks/scaling.py`` sets them).
        self.batch_size: int | None = None
        self.steps: int | None = None
        self.rng = np.random.default_rng(0)

    def batch(self, default: int) -> int:
        """The batch size of a case whose own batch is ``default``."""
        return self.batch_size if self.batch_size is not None else default * self.scale

    def host(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape).astype(np.float32)

    def ours(self, host: np.ndarray):
        return self.be.asarray(host)

    def theirs(self, host: np.ndarray, grad: bool = True, channels_first: bool = False,
               channels_last: bool = False):
        """A PyTorch copy of ``host``; ``channels_first`` moves the last axis to axis 1 (NCHW), and
        ``channels_last`` then stores it in PyTorch's channels-last memory format (NHWC in memory)."""
        if channels_first or channels_last:
            host = np.moveaxis(host, -1, 1)
        t = self.torch.tensor(np.ascontiguousarray(host), device=self.dev)
        if channels_last:
            t = t.contiguous(memory_format=self.torch.channels_last)
        return t.requires_grad_(grad)

    def theirs_image(self, host: np.ndarray, grad: bool, layout: str):
        """A 4-D image in PyTorch's layout ``"channels_first"`` or ``"channels_last"``."""
        return self.theirs(host, grad, channels_first=True, channels_last=layout == "channels_last")


IMAGE_LAYOUTS = ("channels_first", "channels_last")


def _layer_step(layer, X, dY) -> Step:
    def step() -> None:
        layer.forward(X)
        layer.backward(dY)
        layer.flush_gradients()
    return step


def _torch_step(fn, inputs, dY, params=()) -> Step:
    def step() -> None:
        out = fn(*inputs)
        out.backward(dY)
        for t in (*inputs, *params):
            t.grad = None
    return step


def _dense_pair(c: Ctx, layer, n_ex: int, n_in: int, n_out: int, torch_fn_of_W):
    X, dY = c.host(n_ex, n_in), c.host(n_ex, n_out)
    ours = _layer_step(layer, c.ours(X), c.ours(dY))
    layer.forward(c.ours(X), retain_derived=False)
    W = c.torch.tensor(anyml.to_numpy(layer.parameters["W"]), device=c.dev, requires_grad=True)
    b = c.torch.zeros(n_out, device=c.dev, requires_grad=True)
    theirs = _torch_step(lambda x: torch_fn_of_W(x, W, b), [c.theirs(X)], c.theirs(dY, False), (W, b))
    return ours, theirs


@case("FullyConnected")
def _fc(c: Ctx):
    n = c.batch(256)
    layer = L.FullyConnected(1024, backend=c.be)
    X, dY = c.host(n, 1024), c.host(n, 1024)
    ours = _layer_step(layer, c.ours(X), c.ours(dY))
    layer.forward(c.ours(X), retain_derived=False)
    W_host = anyml.to_numpy(layer.parameters["W"])
    torch, F = c.torch, c.torch.nn.functional
    W = torch.tensor(W_host, device=c.dev, requires_grad=True)
    Wt = torch.tensor(np.ascontiguousarray(W_host.T), device=c.dev, requires_grad=True)  # (out, in)
    b = torch.zeros(1024, device=c.dev, requires_grad=True)
    x, g = c.theirs(X), c.theirs(dY, False)
    return ours, {"matmul": _torch_step(lambda x: x @ W + b, [x], g, (W, b)),
                  "addmm": _torch_step(lambda x: torch.addmm(b, x, W), [x], g, (W, b)),
                  "F.linear": _torch_step(lambda x: F.linear(x, Wt, b), [x], g, (Wt, b))}


@case("SparseEvolution")
def _set(c: Ctx):
    n = c.batch(256)
    layer = L.SparseEvolution(1024, backend=c.be)
    X = c.host(n, 1024)
    layer.forward(c.ours(X), retain_derived=False)
    mask = c.torch.tensor(anyml.to_numpy(layer.parameters["W_mask"]), device=c.dev)
    return _dense_pair(c, layer, n, 1024, 1024, lambda x, W, b: x @ (W * mask) + b)


def _image_variants(c: Ctx, fn_of_params, X: np.ndarray, dY: np.ndarray,
                    params_host: dict[str, np.ndarray]) -> dict[str, Step]:
    """PyTorch's step in each image layout: ``fn_of_params(x, **params)``; 4-D parameters (conv
    weights) are stored in the same memory format as the images."""
    out = {}
    for layout in IMAGE_LAYOUTS:
        params = {}
        for name, value in params_host.items():
            t = c.torch.tensor(np.ascontiguousarray(value), device=c.dev)
            if t.ndim == 4 and layout == "channels_last":
                t = t.contiguous(memory_format=c.torch.channels_last)
            params[name] = t.requires_grad_(True)
        x, g = c.theirs_image(X, True, layout), c.theirs_image(dY, False, layout)
        out[layout] = _torch_step(lambda x, params=params: fn_of_params(x, **params), [x], g,
                                  tuple(params.values()))
    return out


@case("Conv2D")
def _conv2d(c: Ctx):
    torch, F = c.torch, c.torch.nn.functional
    n = c.batch(32)
    layer = L.Conv2D(32, (3, 3), pad="same", act_fn="ReLU", backend=c.be)
    X, dY = c.host(n, 32, 32, 16), c.host(n, 32, 32, 32)
    layer.forward(c.ours(X), retain_derived=False)
    W = np.transpose(anyml.to_numpy(layer.parameters["W"]), (3, 2, 0, 1))
    b = c.rng.standard_normal(32).astype(np.float32)
    layer.set_params({"b": b})
    theirs = _image_variants(c, lambda x, W, b: torch.relu(F.conv2d(x, W, b, padding=1)), X, dY,
                             {"W": W, "b": b})
    return _layer_step(layer, c.ours(X), c.ours(dY)), theirs


@case("Conv1D")
def _conv1d(c: Ctx):
    F = c.torch.nn.functional
    n = c.batch(32)
    layer = L.Conv1D(32, 5, backend=c.be)
    X, dY = c.host(n, 256, 16), c.host(n, 252, 32)
    layer.forward(c.ours(X), retain_derived=False)
    W = c.theirs(np.transpose(anyml.to_numpy(layer.parameters["W"]), (2, 1, 0)))
    b = c.torch.zeros(32, device=c.dev, requires_grad=True)
    theirs = _torch_step(lambda x: F.conv1d(x, W, b), [c.theirs(X, channels_first=True)],
                         c.theirs(dY, False, True), (W, b))
    return _layer_step(layer, c.ours(X), c.ours(dY)), theirs


@case("Deconv2D")
def _deconv2d(c: Ctx):
    F = c.torch.nn.functional
    n = c.batch(32)
    layer = L.Deconv2D(16, (3, 3), stride=2, backend=c.be)
    X = c.host(n, 16, 16, 16)
    Y = layer.forward(c.ours(X), retain_derived=False)
    dY = c.host(*Y.shape)
    W = np.transpose(anyml.to_numpy(layer.parameters["W"]), (2, 3, 0, 1))
    theirs = _image_variants(c, lambda x, W, b: F.conv_transpose2d(x, W, b, stride=2), X, dY,
                             {"W": W, "b": np.zeros(16, np.float32)})
    return _layer_step(layer, c.ours(X), c.ours(dY)), theirs


@case("Pool2D")
def _pool(c: Ctx):
    F = c.torch.nn.functional
    n = c.batch(4)
    layer = L.Pool2D((2, 2), stride=2, backend=c.be)
    X, dY = c.host(n, 32, 32, 16), c.host(n, 16, 16, 16)
    theirs = _image_variants(c, lambda x: F.max_pool2d(x, 2, 2), X, dY, {})
    return _layer_step(layer, c.ours(X), c.ours(dY)), theirs


def _norm_pair(c: Ctx, layer, shape: tuple[int, ...], torch_fn, params_shape: tuple[int, ...],
               channels_first: bool = False):
    X, dY = c.host(*shape), c.host(*shape)
    g = c.torch.ones(params_shape, device=c.dev, requires_grad=True)
    b = c.torch.zeros(params_shape, device=c.dev, requires_grad=True)
    theirs = _torch_step(lambda x: torch_fn(x, g, b), [c.theirs(X, channels_first=channels_first)],
                         c.theirs(dY, False, channels_first), (g, b))
    return _layer_step(layer, c.ours(X), c.ours(dY)), theirs


@case("BatchNorm1D")
def _bn1(c: Ctx):
    F = c.torch.nn.functional
    return _norm_pair(c, L.BatchNorm1D(backend=c.be), (c.batch(256), 1024),
                      lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), (1024,))


@case("BatchNorm2D")
def _bn2(c: Ctx):
    F = c.torch.nn.functional
    X, dY = c.host(c.batch(32), 32, 32, 16), c.host(c.batch(32), 32, 32, 16)
    theirs = _image_variants(c, lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), X, dY,
                             {"g": np.ones(16, np.float32), "b": np.zeros(16, np.float32)})
    return _layer_step(L.BatchNorm2D(backend=c.be), c.ours(X), c.ours(dY)), theirs


@case("LayerNorm1D")
def _ln1(c: Ctx):
    F = c.torch.nn.functional
    return _norm_pair(c, L.LayerNorm1D(backend=c.be), (c.batch(256), 1024),
                      lambda x, g, b: F.layer_norm(x, (1024,), g, b), (1024,))


@case("LayerNorm2D")
def _ln2(c: Ctx):
    F = c.torch.nn.functional
    return _norm_pair(c, L.LayerNorm2D(backend=c.be), (c.batch(32), 32, 32, 16),
                      lambda x, g, b: F.layer_norm(x, (32, 32, 16), g, b), (32, 32, 16))


def _recurrent_pair(c: Ctx, layer, module, cell: bool):
    n, n_in, n_out, n_t = c.batch(32), 64, 128, c.steps or 32
    module = module.to(c.dev)
    if cell:
        X, dY = c.host(n, n_in), c.host(n, n_out)
        Xt = c.theirs(X)

        def torch_fn(x):
            out = module(x)
            return out[0] if isinstance(out, tuple) else out
    else:
        X, dY = c.host(n, n_in, n_t), c.host(n, n_out, n_t)
        Xt = c.theirs(np.transpose(X, (0, 2, 1)))
        dY_t = np.transpose(dY, (0, 2, 1))

        def torch_fn(x):
            return module(x)[0]
    ours_X, ours_dY = c.ours(X), c.ours(dY)

    def ours() -> None:
        layer.forward(ours_X)
        layer.backward(ours_dY)
        layer.flush_gradients()

    target = c.theirs(dY if cell else dY_t, False)
    return ours, _torch_step(torch_fn, [Xt], target, tuple(module.parameters()))


@case("RNN")
def _rnn(c: Ctx):
    return _recurrent_pair(c, L.RNN(128, backend=c.be), c.torch.nn.RNN(64, 128, batch_first=True), False)


@case("LSTM")
def _lstm(c: Ctx):
    return _recurrent_pair(c, L.LSTM(128, backend=c.be), c.torch.nn.LSTM(64, 128, batch_first=True), False)


@case("RNNCell")
def _rnn_cell(c: Ctx):
    return _recurrent_pair(c, L.RNNCell(128, backend=c.be), c.torch.nn.RNNCell(64, 128), True)


@case("LSTMCell")
def _lstm_cell(c: Ctx):
    return _recurrent_pair(c, L.LSTMCell(128, backend=c.be), c.torch.nn.LSTMCell(64, 128), True)


@case("Embedding")
def _embedding(c: Ctx):
    n = c.batch(64)
    layer = L.Embedding(128, 10000, backend=c.be)
    ids = c.rng.integers(0, 10000, size=(n, 32))
    dY = c.host(n, 32, 128)
    layer.forward(c.ours(ids), retain_derived=False)
    W = c.theirs(anyml.to_numpy(layer.parameters["W"]))
    ids_t = c.torch.tensor(ids, device=c.dev)
    theirs = _torch_step(lambda: c.torch.nn.functional.embedding(ids_t, W), [], c.theirs(dY, False), (W,))
    return _layer_step(layer, c.ours(ids), c.ours(dY)), theirs


@case("DotProductAttention")
def _attention(c: Ctx):
    n = c.batch(32)
    layer = L.DotProductAttention(backend=c.be)
    Q, K, V, dY = (c.host(n, 64, 64) for _ in range(4))
    ours_in = [c.ours(a) for a in (Q, K, V)]
    ours_dY = c.ours(dY)

    def ours() -> None:
        layer.forward(*ours_in)
        layer.backward(ours_dY)

    def torch_fn(q, k, v):
        return c.torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1) @ v

    sdpa = c.torch.nn.functional.scaled_dot_product_attention
    inputs, g = [c.theirs(a) for a in (Q, K, V)], c.theirs(dY, False)
    return ours, {"matmul-softmax-matmul": _torch_step(torch_fn, inputs, g),
                  "scaled_dot_product_attention": _torch_step(sdpa, inputs, g)}


@case("Softmax")
def _softmax(c: Ctx):
    n = c.batch(32)
    X, dY = c.host(n, 1000), c.host(n, 1000)
    theirs = _torch_step(lambda x: c.torch.softmax(x, dim=-1), [c.theirs(X)], c.theirs(dY, False))
    return _layer_step(L.Softmax(backend=c.be), c.ours(X), c.ours(dY)), theirs


def _merge_pair(c: Ctx, layer, torch_fn):
    shape = (c.batch(32), 32, 32, 32)
    Xs, dY = [c.host(*shape) for _ in range(3)], c.host(*shape)
    return (_layer_step(layer, [c.ours(x) for x in Xs], c.ours(dY)),
            _torch_step(torch_fn, [c.theirs(x) for x in Xs], c.theirs(dY, False)))


@case("Add")
def _add(c: Ctx):
    return _merge_pair(c, L.Add(backend=c.be), lambda a, b, d: a + b + d)


@case("Multiply")
def _multiply(c: Ctx):
    return _merge_pair(c, L.Multiply(backend=c.be), lambda a, b, d: a * b * d)


@case("Flatten")
def _flatten(c: Ctx):
    X, dY = c.host(c.batch(32), 32, 32, 16), c.host(c.batch(32), 32 * 32 * 16)
    theirs = _torch_step(lambda x: x.reshape(x.shape[0], -1), [c.theirs(X)], c.theirs(dY, False))
    return _layer_step(L.Flatten(backend=c.be), c.ours(X), c.ours(dY)), theirs


@case("RBM")
def _rbm(c: Ctx):
    n = c.batch(128)
    layer = L.RBM(256, backend=c.be)
    V = (c.rng.random((n, 784)) < 0.3).astype(np.float32)
    ours_V = c.ours(V)
    layer.forward(ours_V, retain_derived=False)
    torch = c.torch
    W = torch.tensor(anyml.to_numpy(layer.parameters["W"]), device=c.dev)
    b_in, b_out = torch.zeros(784, device=c.dev), torch.zeros(256, device=c.dev)
    Vt = torch.tensor(V, device=c.dev)

    def ours() -> None:
        layer.CD_update(ours_V)
        layer.flush_gradients()

    def theirs() -> None:  # CD-1 as in anyml: sampled hiddens, probabilities for the visibles
        p_h = torch.sigmoid(Vt @ W + b_out)
        h = torch.bernoulli(p_h)
        p_v = torch.sigmoid(h @ W.T + b_in)
        p_h2 = torch.sigmoid(p_v @ W + b_out)
        return (p_v.T @ p_h2 - Vt.T @ p_h, (p_v - Vt).sum(0), (p_h2 - p_h).sum(0))

    return ours, theirs


def _digits_example():
    """The example's own module (examples/digits_cnn.py), so the benchmark times the real model."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("digits_cnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@case("digits CNN training step")
def _digits_step(c: Ctx):
    torch, nn = c.torch, c.torch.nn
    n = c.batch(32)  # the example's batch size
    X = c.rng.random((n, 8, 8, 1)).astype(np.float32)
    y = c.rng.integers(0, 10, size=n)
    model = _digits_example().build_model(c.be, lr=0.003)
    ours_X, ours_y = c.ours(X), c.be.asarray(y)

    def ours() -> None:
        model.train_on_batch(ours_X, ours_y)

    yt = torch.tensor(y, device=c.dev)

    def variant(layout: str, fused: bool) -> Step:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16),
                            nn.MaxPool2d(2, 2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                            nn.BatchNorm2d(32), nn.MaxPool2d(2, 2), nn.Flatten(),
                            nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10)).to(c.dev)
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), lr=0.003, **({"fused": True} if fused else {}))
        Xt = c.theirs_image(X, False, layout)

        def theirs() -> None:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(Xt), yt).backward()
            opt.step()
        return theirs

    return ours, {f"{layout}, {'fused' if fused else 'foreach'} Adam": variant(layout, fused)
                  for layout in IMAGE_LAYOUTS for fused in (False, True)}


def pick_fastest(variants: Step | dict[str, Step], sync: Callable[[], None], repeats: int = 7,
                 rounds: int = 2) -> tuple[Step, str | None, dict[str, float]]:
    """The fastest of PyTorch's ways of doing a case, by a short timing of each in alternating blocks;
    returns the step, its name and every variant's median milliseconds."""
    if not isinstance(variants, dict):
        return variants, None, {}
    names = list(variants)
    if len(names) == 1:
        return variants[names[0]], names[0], {}
    per_round = compare([variants[k] for k in names], warmup=2, repeats=repeats, rounds=rounds,
                        syncs=[sync] * len(names), pause=0.05)
    times = {k: statistics.median(t) for k, t in zip(names, per_round, strict=True)}
    best = min(names, key=times.__getitem__)
    return variants[best], best, times


def blas_peak_gflops(size: int = 2048, repeats: int = 7) -> float:
    """This machine's float32 matrix-product rate in NumPy: the best of ``repeats`` products of two
    ``size`` x ``size`` matrices, in GFLOP/s (the ceiling for an im2col convolution)."""
    import time

    A = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    A @ A
    best = min(_timed(lambda: A @ A, time.perf_counter) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn: Step, clock: Callable[[], float]) -> float:
    start = clock()
    fn()
    return clock() - start


def conv2d_flops(c_scale: int = 1) -> float:
    """The multiply-adds (x2) of the Conv2D case's three products: the output, the weight gradient
    and the input gradient, each ``(n * 32 * 32) x (3 * 3 * 16) x 32``."""
    return 3 * 2 * (32 * c_scale * 32 * 32) * (3 * 3 * 16) * 32


def run(be: Backend, scale: int, names: list[str], warmup: int, repeats: int, rounds: int) -> list[dict]:
    import torch

    if be.name == "torch":
        torch_device = str(be.device)
    elif be.name == "cupy":
        torch_device = f"cuda:{be.device.id}"
    else:
        torch_device = "cpu"
    sync_torch = (lambda: torch.cuda.synchronize()) if torch_device.startswith("cuda") else (lambda: None)
    ctx = Ctx(be, torch_device, scale)
    rows = []
    for name in names:
        ours, variants = CASES[name](ctx)
        theirs, variant, variant_ms = pick_fastest(variants, sync_torch)
        ours_rounds, torch_rounds = compare([ours, theirs], warmup=warmup, repeats=repeats, rounds=rounds,
                                            syncs=[be.synchronize, sync_torch])
        ours_ms, torch_ms = statistics.median(ours_rounds), statistics.median(torch_rounds)
        ratio = paired_ratio(ours_rounds, torch_rounds)
        rows.append({"layer": name, "anyml_ms": ours_ms, "torch_ms": torch_ms, "ratio": ratio,
                     "torch_variant": variant, "torch_variant_ms": variant_ms})
        print(f"{name:>26}  {ours_ms:9.3f}  {torch_ms:9.3f}  {ratio:6.2f}  {variant or ''}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--device", default=None)
    parser.add_argument("--gpu-sizes", action="store_true", help="scale the batches up 16x to fill a GPU")
    parser.add_argument("--only", nargs="*", default=None, help="layer names to run (default: all)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="where to write the table as JSON")
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown layer(s) {unknown}; choose from {list(CASES)}")
    try:
        be = anyml.make_backend(args.backend, device=args.device, dtype="float32", seed=0)
    except anyml.BackendUnavailableError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(f"{'layer':>26}  {'anyml ms':>9}  {'torch ms':>9}  {'ratio':>6}  torch's fastest way")
    rows = run(be, 16 if args.gpu_sizes else 1, names, args.warmup, args.repeats, args.rounds)
    summary = {
        "backend": args.backend,
        "gpu_sizes": args.gpu_sizes,
        "machine": platform.platform(),
        "rows": rows,
        **layer_summary(rows),
    }
    if be.name == "numpy" and any(r["layer"] == "Conv2D" for r in rows):
        conv_ms = next(r["anyml_ms"] for r in rows if r["layer"] == "Conv2D")
        summary["blas_peak_gflops"] = blas_peak_gflops()
        summary_scale = 16 if args.gpu_sizes else 1
        summary["conv2d_gflops"] = conv2d_flops(summary_scale) / conv_ms / 1e6
        print(f"float32 matrix products: {summary['blas_peak_gflops']:.0f} GFLOP/s at best (2048 x 2048); "
              f"Conv2D's three products over its whole step: {summary['conv2d_gflops']:.0f} GFLOP/s "
              f"(batch {32 * summary_scale})")
    print_layer_summary(summary, "layer ratios")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
