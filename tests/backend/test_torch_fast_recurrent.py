"""PyTorch's LSTM kernel and fused optimizer steps behind the pure functions equal the pure path.

Each test runs on the backends of the matrix that register the fast path (torch, on the CPU here and
on a CUDA device where the matrix has one) and is skipped on the others. The pure reference is the
same call inside ``use_fast_paths(False)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.activations import Sigmoid, Tanh
from anyml.backend import fast_path, use_fast_paths
from anyml.backend._torch_fast_recurrent import TorchRecurrentGraph
from anyml.functional import recurrent as rf
from anyml.layers.recurrent import LSTM
from anyml.optimizers import adagrad_step, adam_step, rmsprop_step, sgd_step
from anyml.testing import assert_close

N_EX, N_IN, N_OUT, N_T = 3, 4, 5, 6


@pytest.fixture
def tb(backend):
    """The matrix backend, when it registers a native LSTM (torch)."""
    if fast_path("lstm_forward", backend.rng.normal((1,))) is None:
        pytest.skip(f"{backend!r} registers no native LSTM")
    return backend


def _both(fn):
    native = fn()
    with use_fast_paths(False):
        pure = fn()
    return native, pure


def _close(backend, got, want, name):
    assert_close(got, anyml.to_numpy(want), backend=backend, err_msg=name)


class _PlainTanh(Tanh):
    """Not recognised as the standard tanh: the native kernel must hand it back."""


@pytest.mark.parametrize("states", [False, True])
def test_lstm_matches_the_pure_path(tb, states):
    rng = np.random.default_rng(0)
    arr = lambda *shape, s=1.0: tb.asarray(s * rng.standard_normal(shape))  # noqa: E731
    X, W, b = arr(N_EX, N_IN, N_T), arr(N_OUT + N_IN, 4 * N_OUT, s=0.5), arr(4 * N_OUT)
    dY = arr(N_EX, N_OUT, N_T)
    A0, C0, dA, dC = (arr(N_EX, N_OUT) if states else None for _ in range(4))

    def run():
        Y, cache = rf.lstm_forward(X, W, b, Tanh(), Sigmoid(), A0=A0, C0=C0)
        return (Y, *rf.lstm_backward(dY, cache, dA_last=dA, dC_last=dC))

    native, pure = _both(run)
    for name, got, want in zip(["Y", "dX", "dW", "db", "dA0", "dC0"], native, pure, strict=True):
        assert tuple(got.shape) == tuple(want.shape), name
        _close(tb, got, want, name)


def test_lstm_other_activations_take_the_pure_path(tb):
    rng = np.random.default_rng(1)
    X = tb.asarray(rng.standard_normal((N_EX, N_IN, N_T)))
    W = tb.asarray(rng.standard_normal((N_OUT + N_IN, 4 * N_OUT)))
    b = tb.asarray(rng.standard_normal(4 * N_OUT))
    native = fast_path("lstm_forward", X)
    assert native(X, W, b, _PlainTanh(), Sigmoid()) is NotImplemented
    Y, cache = rf.lstm_forward(X, W, b, _PlainTanh(), Sigmoid())
    assert not isinstance(cache, TorchRecurrentGraph)
    with use_fast_paths(False):
        Y_pure, _ = rf.lstm_forward(X, W, b, _PlainTanh(), Sigmoid())
    _close(tb, Y, Y_pure, "Y")


def test_lstm_layer_trains_the_same_with_the_native_kernel(tb):
    rng = np.random.default_rng(2)
    X = tb.asarray(rng.standard_normal((N_EX, N_IN, N_T)))
    dY = tb.asarray(rng.standard_normal((N_EX, N_OUT, N_T)))

    def run():
        layer = LSTM(N_OUT, optimizer="Adam(lr=0.01)", backend=tb)
        layer.forward(X, retain_derived=False)
        layer.parameters.update({k: tb.asarray(np.linspace(-0.5, 0.5, int(np.prod(v.shape)))
                                               .reshape(tuple(v.shape)))
                                 for k, v in layer.parameters.items()})
        out = []
        for _ in range(2):
            out.append(layer.forward(X))
            out.append(layer.backward(dY))
            layer.update()
        return out + [layer.parameters[k] for k in sorted(layer.parameters)]

    native, pure = _both(run)
    for i, (got, want) in enumerate(zip(native, pure, strict=True)):
        _close(tb, got, want, f"output {i}")


KERNELS = [  # (id, kernel name, one step, number of state arrays)
    ("sgd", "sgd_step", lambda p, g, s, t: sgd_step(p, g, None, 0.1, 0.0), 0),
    ("momentum", "sgd_step", lambda p, g, s, t: sgd_step(p, g, s[0], 0.1, 0.9), 1),
    ("adagrad", "adagrad_step", lambda p, g, s, t: adagrad_step(p, g, s[0], 0.05, 1e-7), 1),
    ("rmsprop", "rmsprop_step", lambda p, g, s, t: rmsprop_step(p, g, s[0], 0.01, 0.9, 1e-7), 1),
    ("adam", "adam_step",
     lambda p, g, s, t: adam_step(p, g, s[0], s[1], 0.01, 0.9, 0.999, 1e-7, t), 2),
    ("adamw", "adam_step",
     lambda p, g, s, t: adam_step(p, g, s[0], s[1], 0.01, 0.8, 0.99, 1e-5, t, 0.1), 2),
]


@pytest.mark.parametrize(("name", "kernel", "step", "n_state"), KERNELS, ids=[k[0] for k in KERNELS])
def test_optimizer_kernels_match_the_pure_path(tb, name, kernel, step, n_state):
    rng = np.random.default_rng(3)
    param = tb.asarray(rng.standard_normal((4, 3)))
    state = tuple(tb.asarray(np.abs(rng.standard_normal((4, 3)))) for _ in range(n_state))
    grads = [tb.asarray(rng.standard_normal((4, 3))) for _ in range(4)]

    def run():
        p, s, out = param, state, []
        for t, g in enumerate(grads, start=1):
            new_p, *new_s = step(p, g, s, t)
            p, s = new_p, tuple(x for x in new_s if x is not None)
            out.extend([p, *s])
        return out

    native, pure = _both(run)
    assert fast_path(kernel, param) is not None
    for i, (got, want) in enumerate(zip(native, pure, strict=True)):
        _close(tb, got, want, f"{name} value {i}")


@pytest.mark.parametrize("carry", [False, True])
def test_lstm_step_matches_the_pure_path(tb, carry):
    rng = np.random.default_rng(4)
    arr = lambda *shape, s=1.0: tb.asarray(s * rng.standard_normal(shape))  # noqa: E731
    Xt, A0, C0 = arr(N_EX, N_IN), arr(N_EX, N_OUT), arr(N_EX, N_OUT)
    W, b = arr(N_OUT + N_IN, 4 * N_OUT, s=0.5), arr(4 * N_OUT)
    dA, dC = arr(N_EX, N_OUT), (arr(N_EX, N_OUT) if carry else None)

    def run():
        A, C, cache = rf.lstm_step_forward(Xt, A0, C0, W, b, Tanh(), Sigmoid())
        return (A, C, *rf.lstm_step_backward(dA, dC, cache))

    native, pure = _both(run)
    names = ["A", "C", "dXt", "dA_prev", "dC_prev", "dW", "db"]
    for name, got, want in zip(names, native, pure, strict=True):
        assert tuple(got.shape) == tuple(want.shape), name
        _close(tb, got, want, name)


def test_rnn_step_matches_the_pure_path(tb):
    rng = np.random.default_rng(5)
    arr = lambda *shape: tb.asarray(rng.standard_normal(shape))  # noqa: E731
    Xt, A0, W, b, dA = arr(N_EX, N_IN), arr(N_EX, N_OUT), arr(N_OUT + N_IN, N_OUT), arr(N_OUT), \
        arr(N_EX, N_OUT)

    def run():
        A, cache = rf.rnn_step_forward(Xt, A0, W, b, Tanh())
        return (A, *rf.rnn_step_backward(dA, cache))

    native, pure = _both(run)
    for name, got, want in zip(["A", "dXt", "dA_prev", "dW", "db"], native, pure, strict=True):
        assert tuple(got.shape) == tuple(want.shape), name
        _close(tb, got, want, name)


def test_steps_with_other_activations_take_the_pure_path(tb):
    rng = np.random.default_rng(6)
    Xt = tb.asarray(rng.standard_normal((N_EX, N_IN)))
    A0 = tb.asarray(rng.standard_normal((N_EX, N_OUT)))
    W = tb.asarray(rng.standard_normal((N_OUT + N_IN, 4 * N_OUT)))
    b = tb.asarray(rng.standard_normal(4 * N_OUT))
    assert fast_path("lstm_step_forward", Xt)(Xt, A0, A0, W, b, _PlainTanh(), Sigmoid()) \
        is NotImplemented
    assert fast_path("rnn_step_forward", Xt)(Xt, A0, W[:, :N_OUT], b[:N_OUT], _PlainTanh()) \
        is NotImplemented
