"""Small models and a harness shared by the data-parallel tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import anyml
from anyml import Sequential
from anyml.distributed import Communicator, SingleProcess, ThreadGroup
from anyml.layers import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Flatten,
    FullyConnected,
    Pool2D,
    Softmax,
    SparseEvolution,
)
from anyml.layers.base import LayerBase
from anyml.wrappers import Dropout


def dense(be: anyml.Backend, loss: str = "CrossEntropy", p: float = 0.0,
          sync: bool = True) -> Sequential:
    first = FullyConnected(7, act_fn="ReLU", optimizer="Adam(lr=0.01)", backend=be)
    return Sequential([Dropout(first, p) if p else first,
                       BatchNorm1D(optimizer="SGD(lr=0.05)", sync=sync, backend=be),
                       FullyConnected(3, optimizer="SGD(lr=0.05, momentum=0.9)", backend=be),
                       Softmax(backend=be)], loss=loss)


def conv(be: anyml.Backend, loss: str = "CrossEntropy") -> Sequential:
    return Sequential([Conv2D(3, (3, 3), pad="same", act_fn="ReLU", optimizer="Adam(lr=0.01)",
                              backend=be),
                       BatchNorm2D(sync=True, optimizer="Adam(lr=0.01)", backend=be),
                       Pool2D((2, 2), stride=2, mode="max", backend=be), Flatten(backend=be),
                       FullyConnected(3, optimizer="Adam(lr=0.01)", backend=be), Softmax(backend=be)],
                      loss=loss)


def sparse(be: anyml.Backend, loss: str = "SquaredError") -> Sequential:
    return Sequential([SparseEvolution(9, epsilon=2, zeta=0.3, act_fn="Tanh",
                                       optimizer="Adam(lr=0.02)", backend=be),
                       Dropout(FullyConnected(2, optimizer="SGD(lr=0.02)", backend=be), 0.25)],
                      loss=loss)


def data(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "image":
        return rng.normal(size=(n, 4, 4, 2)), rng.integers(0, 3, n)
    if kind == "regression":
        return rng.normal(size=(n, 5)), rng.normal(size=(n, 2))
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def params(model: Sequential) -> list[np.ndarray]:
    """Every parameter of the model (running statistics and masks included), as host copies."""
    out = []
    for obj in model._modules():
        if isinstance(obj, LayerBase):
            out.extend(anyml.to_numpy(obj.parameters[k]).copy() for k in sorted(obj.parameters))
    return out


def run(size: int, train: Callable[[Communicator], Any]) -> list[Any]:
    """``train(comm)`` on one process (``size == 1``) or on a thread group of ``size`` ranks."""
    if size == 1:
        return [train(SingleProcess())]
    return ThreadGroup(size, timeout=60).run(train)


def assert_same_run(got: list[np.ndarray], want: list[np.ndarray], rtol: float = 1e-10) -> None:
    """Parameters equal to ``rtol`` relative to each array's largest magnitude."""
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape, i
        scale = max(float(np.max(np.abs(b))), 1e-300) if b.size else 1.0
        err = float(np.max(np.abs(a - b))) / scale if b.size else 0.0
        assert err <= rtol, f"parameter {i}: relative error {err:.3g} > {rtol:g}"
