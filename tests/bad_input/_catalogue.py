"""The 21 layers, each with a way to build it, valid inputs of any batch size, and settings that its
constructor (and so ``set_params``) must refuse."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyml import layers as L  # noqa: N812


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[..., Any]
    #: host input shapes for ``n_ex`` examples (one per positional input)
    shapes: Callable[[int], list[tuple[int, ...]]]
    #: constructor settings that must be refused: (keyword, value) pairs
    bad: list[tuple[str, Any]] = field(default_factory=list)
    ids: bool = False  # integer ids (Embedding)
    list_input: bool = False  # a list of arrays (Add, Multiply)

    def host_inputs(self, n_ex: int, dtype: str, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        if self.ids:
            return [rng.integers(0, 10, size=s) for s in self.shapes(n_ex)]
        if self.name == "RBM":
            return [rng.uniform(size=s).astype(dtype) for s in self.shapes(n_ex)]
        return [rng.standard_normal(s).astype(dtype) for s in self.shapes(n_ex)]

    def inputs(self, backend: Any, n_ex: int = 3, seed: int = 0) -> list[Any]:
        return [backend.asarray(a) for a in self.host_inputs(n_ex, backend.dtype_name, seed)]

    def forward(self, layer: Any, inputs: list[Any], **kwargs: Any) -> Any:
        if self.list_input:
            return layer.forward(inputs, **kwargs)
        return layer.forward(*inputs, **kwargs)


_COMMON_BAD = [("init", "Nope"), ("optimizer", "Nope")]
_NOUT_BAD = [("n_out", -1), ("n_out", 0), ("n_out", 2.5), ("n_out", True), ("n_out", "3")]
_CONV_BAD = [("out_ch", -1), ("out_ch", 0), ("stride", 0), ("stride", -2), ("pad", "nope"),
             ("pad", -1), ("dilation", -1), ("act_fn", "Nope")]
_EPS_BAD = [("epsilon", -1), ("epsilon", 0), ("epsilon", float("nan")), ("epsilon", "x")]

CASES = {c.name: c for c in [
    Case("FullyConnected", lambda be, **k: L.FullyConnected(**{"n_out": 3, **k}, backend=be),
         lambda n: [(n, 5)], [*_NOUT_BAD, ("act_fn", "Nope"), *_COMMON_BAD]),
    Case("Conv1D", lambda be, **k: L.Conv1D(**{"out_ch": 2, "kernel_width": 3, **k}, backend=be),
         lambda n: [(n, 7, 3)], [*_CONV_BAD, ("kernel_width", 0), *_COMMON_BAD]),
    Case("Conv2D", lambda be, **k: L.Conv2D(**{"out_ch": 2, "kernel_shape": (3, 3), **k}, backend=be),
         lambda n: [(n, 6, 5, 3)], [*_CONV_BAD, ("kernel_shape", (0, 3)), *_COMMON_BAD]),
    Case("Deconv2D", lambda be, **k: L.Deconv2D(**{"out_ch": 2, "kernel_shape": (3, 3), **k},
                                               backend=be),
         lambda n: [(n, 4, 5, 3)], [*_CONV_BAD, ("kernel_shape", (3, -1)), *_COMMON_BAD]),
    Case("Pool2D", lambda be, **k: L.Pool2D(**{"kernel_shape": (2, 2), **k}, backend=be),
         lambda n: [(n, 4, 5, 3)],
         [("kernel_shape", 0), ("stride", 0), ("mode", "median"), ("pad", "nope"),
          ("optimizer", "Nope")]),
    Case("BatchNorm1D", lambda be, **k: L.BatchNorm1D(**k, backend=be), lambda n: [(n, 4)],
         [("momentum", 5), ("momentum", -0.1), *_EPS_BAD, ("optimizer", "Nope")]),
    Case("BatchNorm2D", lambda be, **k: L.BatchNorm2D(**k, backend=be), lambda n: [(n, 3, 2, 4)],
         [("momentum", 5), *_EPS_BAD]),
    Case("LayerNorm1D", lambda be, **k: L.LayerNorm1D(**k, backend=be), lambda n: [(n, 4)],
         [*_EPS_BAD, ("optimizer", "Nope")]),
    Case("LayerNorm2D", lambda be, **k: L.LayerNorm2D(**k, backend=be), lambda n: [(n, 3, 2, 4)],
         _EPS_BAD),
    Case("Embedding", lambda be, **k: L.Embedding(**{"n_out": 4, "vocab_size": 10, **k}, backend=be),
         lambda n: [(n, 5)],
         [*_NOUT_BAD, ("vocab_size", 0), ("vocab_size", -3), ("pool", "median"), *_COMMON_BAD],
         ids=True),
    Case("DotProductAttention", lambda be, **k: L.DotProductAttention(**k, backend=be),
         lambda n: [(n, 3, 4), (n, 5, 4), (n, 5, 6)],
         [("dropout_p", 2), ("dropout_p", -0.1), ("dropout_p", 1.0), ("scale", "yes"),
          *_COMMON_BAD]),
    Case("RNNCell", lambda be, **k: L.RNNCell(**{"n_out": 3, **k}, backend=be), lambda n: [(n, 4)],
         [*_NOUT_BAD, ("act_fn", "Nope"), *_COMMON_BAD]),
    Case("RNN", lambda be, **k: L.RNN(**{"n_out": 3, **k}, backend=be), lambda n: [(n, 4, 5)],
         [*_NOUT_BAD, ("act_fn", "Nope"), *_COMMON_BAD]),
    Case("LSTMCell", lambda be, **k: L.LSTMCell(**{"n_out": 3, **k}, backend=be),
         lambda n: [(n, 4)], [*_NOUT_BAD, ("gate_fn", "Nope"), *_COMMON_BAD]),
    Case("LSTM", lambda be, **k: L.LSTM(**{"n_out": 3, **k}, backend=be), lambda n: [(n, 4, 5)],
         [*_NOUT_BAD, ("gate_fn", "Nope"), ("act_fn", 3), *_COMMON_BAD]),
    Case("Add", lambda be, **k: L.Add(**k, backend=be), lambda n: [(n, 4), (n, 4)],
         [("act_fn", "Nope"), ("act_fn", 1.5)], list_input=True),
    Case("Multiply", lambda be, **k: L.Multiply(**k, backend=be), lambda n: [(n, 4), (n, 4)],
         [("act_fn", "Nope")], list_input=True),
    Case("Flatten", lambda be, **k: L.Flatten(**k, backend=be), lambda n: [(n, 3, 4)],
         [("keep_dim", "middle"), ("keep_dim", 0), ("keep_dim", None)]),
    Case("Softmax", lambda be, **k: L.Softmax(**k, backend=be), lambda n: [(n, 4)],
         [("dim", 1.5), ("dim", "last"), ("dim", None)]),
    Case("RBM", lambda be, **k: L.RBM(**{"n_out": 3, **k}, backend=be), lambda n: [(n, 6)],
         [*_NOUT_BAD, ("K", 0), ("K", -1), *_COMMON_BAD]),
    Case("SparseEvolution", lambda be, **k: L.SparseEvolution(**{"n_out": 3, **k}, backend=be),
         lambda n: [(n, 5)],
         [*_NOUT_BAD, ("zeta", 5), ("zeta", -0.5), ("epsilon", -1), ("act_fn", "Nope"),
          *_COMMON_BAD]),
]}

assert len(CASES) == 21, sorted(CASES)

#: (layer name, keyword, bad value) for every refused setting of every layer
BAD_SETTINGS = [(c.name, key, value) for c in CASES.values() for key, value in c.bad]
