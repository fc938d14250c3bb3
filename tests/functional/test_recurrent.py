"""anyml.functional.recurrent: RNN and LSTM kernels against torch.nn.RNN / torch.nn.LSTM."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.activations import Sigmoid, Tanh, get_activation
from anyml.functional import recurrent as rf
from anyml.testing import assert_close

N_EX, N_IN, N_OUT = 3, 4, 5


def _host(backend, x):
    """``x`` rounded to the backend's dtype, as float64 (what the reference should see)."""
    return np.asarray(x).astype(backend.dtype_name).astype(np.float64)


def _rnn_params(rng, n_in=N_IN, n_out=N_OUT):
    return {"Wax": 0.6 * rng.standard_normal((n_in, n_out)),
            "Waa": 0.6 * rng.standard_normal((n_out, n_out)),
            "bx": 0.3 * rng.standard_normal(n_out), "ba": 0.3 * rng.standard_normal(n_out)}


def _lstm_params(rng, n_in=N_IN, n_out=N_OUT):
    out = {f"W{g}": 0.5 * rng.standard_normal((n_out + n_in, n_out)) for g in "fuco"}
    out.update({f"b{g}": 0.3 * rng.standard_normal(n_out) for g in "fuco"})
    return out


def torch_rnn(X, P, A0, dY, dA_last, nonlinearity="tanh"):
    """torch.nn.RNN on host float64 arrays laid out as anyml's; returns outputs and gradients."""
    import torch

    n_in, n_out = P["Wax"].shape
    rnn = torch.nn.RNN(n_in, n_out, nonlinearity=nonlinearity, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(P["Wax"].T))
        rnn.weight_hh_l0.copy_(torch.from_numpy(P["Waa"].T))
        rnn.bias_ih_l0.copy_(torch.from_numpy(P["bx"]))
        rnn.bias_hh_l0.copy_(torch.from_numpy(P["ba"]))
    Xt = torch.tensor(X.transpose(0, 2, 1), requires_grad=True)
    h0 = torch.tensor(A0[None], requires_grad=True)
    out, hn = rnn(Xt, h0)
    torch.autograd.backward([out, hn], [torch.from_numpy(dY.transpose(0, 2, 1).copy()),
                                        torch.from_numpy(dA_last[None].copy())])
    return {"Y": out.detach().numpy().transpose(0, 2, 1), "dX": Xt.grad.numpy().transpose(0, 2, 1),
            "Wax": rnn.weight_ih_l0.grad.numpy().T, "Waa": rnn.weight_hh_l0.grad.numpy().T,
            "bx": rnn.bias_ih_l0.grad.numpy(), "ba": rnn.bias_hh_l0.grad.numpy(),
            "dA0": h0.grad.numpy()[0]}


# torch's gate blocks are (input, forget, candidate, output); anyml's update gate is torch's input gate.
TORCH_LSTM_ORDER = "ufco"


def torch_lstm(X, P, A0, C0, dY, dA_last, dC_last):
    """torch.nn.LSTM on host float64 arrays laid out as anyml's; returns outputs and gradients."""
    import torch

    n_out = P["Wf"].shape[1]
    n_in = P["Wf"].shape[0] - n_out
    lstm = torch.nn.LSTM(n_in, n_out, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(
            np.concatenate([P[f"W{g}"][n_out:].T for g in TORCH_LSTM_ORDER])))
        lstm.weight_hh_l0.copy_(torch.from_numpy(
            np.concatenate([P[f"W{g}"][:n_out].T for g in TORCH_LSTM_ORDER])))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([P[f"b{g}"] for g in TORCH_LSTM_ORDER])))
        lstm.bias_hh_l0.zero_()
    Xt = torch.tensor(X.transpose(0, 2, 1), requires_grad=True)
    h0 = torch.tensor(A0[None], requires_grad=True)
    c0 = torch.tensor(C0[None], requires_grad=True)
    out, (hn, cn) = lstm(Xt, (h0, c0))
    torch.autograd.backward([out, hn, cn], [torch.from_numpy(dY.transpose(0, 2, 1).copy()),
                                            torch.from_numpy(dA_last[None].copy()),
                                            torch.from_numpy(dC_last[None].copy())])
    gih, ghh = lstm.weight_ih_l0.grad.numpy(), lstm.weight_hh_l0.grad.numpy()
    gb = lstm.bias_ih_l0.grad.numpy()
    ref = {"Y": out.detach().numpy().transpose(0, 2, 1), "dX": Xt.grad.numpy().transpose(0, 2, 1),
           "dA0": h0.grad.numpy()[0], "dC0": c0.grad.numpy()[0]}
    for k, g in enumerate(TORCH_LSTM_ORDER):
        rows = slice(k * n_out, (k + 1) * n_out)
        ref[f"W{g}"] = np.concatenate([ghh[rows].T, gih[rows].T], axis=0)
        ref[f"b{g}"] = gb[rows]
    return ref


@pytest.mark.parametrize("n_t", [1, 2, 5])
@pytest.mark.parametrize(("act", "nonlinearity"), [("Tanh", "tanh"), ("ReLU", "relu")])
def test_rnn_matches_torch(backend, n_t, act, nonlinearity):
    pytest.importorskip("torch")
    rng = np.random.default_rng(n_t)
    P = {k: _host(backend, v) for k, v in _rnn_params(rng).items()}
    X = _host(backend, rng.standard_normal((N_EX, N_IN, n_t)))
    A0 = _host(backend, rng.standard_normal((N_EX, N_OUT)))
    dY = _host(backend, rng.standard_normal((N_EX, N_OUT, n_t)))
    dA_last = _host(backend, rng.standard_normal((N_EX, N_OUT)))
    ref = torch_rnn(X, P, A0, dY, dA_last, nonlinearity)

    be = {k: backend.asarray(v) for k, v in P.items()}
    W, b = rf.rnn_pack(be["Wax"], be["Waa"], be["bx"], be["ba"])
    Y, cache = rf.rnn_forward(backend.asarray(X), W, b, get_activation(act), A0=backend.asarray(A0))
    dX, dW, db, dA0 = rf.rnn_backward(backend.asarray(dY), cache, dA_last=backend.asarray(dA_last))
    grads = rf.rnn_unpack(dW, db, N_OUT)
    assert tuple(Y.shape) == (N_EX, N_OUT, n_t)
    assert_close(Y, ref["Y"], backend=backend)
    assert_close(dX, ref["dX"], backend=backend)
    assert_close(dA0, ref["dA0"], backend=backend)
    for name in ("Wax", "Waa", "bx", "ba"):
        assert_close(grads[name], ref[name], backend=backend, err_msg=name)


@pytest.mark.parametrize("n_t", [1, 2, 5])
def test_lstm_matches_torch(backend, n_t):
    pytest.importorskip("torch")
    rng = np.random.default_rng(10 + n_t)
    P = {k: _host(backend, v) for k, v in _lstm_params(rng).items()}
    X = _host(backend, rng.standard_normal((N_EX, N_IN, n_t)))
    A0, C0, dA_last, dC_last = (_host(backend, rng.standard_normal((N_EX, N_OUT))) for _ in range(4))
    dY = _host(backend, rng.standard_normal((N_EX, N_OUT, n_t)))
    ref = torch_lstm(X, P, A0, C0, dY, dA_last, dC_last)

    be = {k: backend.asarray(v) for k, v in P.items()}
    W, b = rf.lstm_pack(*(be[f"W{g}"] for g in "fuco"), *(be[f"b{g}"] for g in "fuco"))
    assert tuple(W.shape) == (N_OUT + N_IN, 4 * N_OUT) and tuple(b.shape) == (4 * N_OUT,)
    Y, cache = rf.lstm_forward(backend.asarray(X), W, b, get_activation("Tanh"),
                              get_activation("Sigmoid"), A0=backend.asarray(A0), C0=backend.asarray(C0))
    dX, dW, db, dA0, dC0 = rf.lstm_backward(backend.asarray(dY), cache, dA_last=backend.asarray(dA_last),
                                           dC_last=backend.asarray(dC_last))
    grads = rf.lstm_unpack(dW, db)
    assert_close(Y, ref["Y"], backend=backend)
    assert_close(dX, ref["dX"], backend=backend)
    assert_close(dA0, ref["dA0"], backend=backend)
    assert_close(dC0, ref["dC0"], backend=backend)
    for g in "fuco":
        assert_close(grads[f"W{g}"], ref[f"W{g}"], backend=backend, err_msg=f"W{g}")
        assert_close(grads[f"b{g}"], ref[f"b{g}"], backend=backend, err_msg=f"b{g}")


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_steps_match_whole_sequence(backend, kind):
    """Looping the step kernels gives the sequence kernels' outputs and gradients."""
    rng = np.random.default_rng(3)
    n_t = 4
    X = backend.asarray(rng.standard_normal((N_EX, N_IN, n_t)))
    dY = backend.asarray(rng.standard_normal((N_EX, N_OUT, n_t)))
    xp, tanh = backend.xp, get_activation("Tanh")
    if kind == "rnn":
        P = {k: backend.asarray(v) for k, v in _rnn_params(rng).items()}
        W, b = rf.rnn_pack(P["Wax"], P["Waa"], P["bx"], P["ba"])
        Y, cache = rf.rnn_forward(X, W, b, tanh)
        dX, dW, db, _ = rf.rnn_backward(dY, cache)
    else:
        P = {k: backend.asarray(v) for k, v in _lstm_params(rng).items()}
        W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
        Y, cache = rf.lstm_forward(X, W, b, tanh, get_activation("Sigmoid"))
        dX, dW, db, _, _ = rf.lstm_backward(dY, cache)

    A = C = xp.zeros((N_EX, N_OUT), dtype=X.dtype, device=X.device)
    steps, outs = [], []
    for t in range(n_t):
        if kind == "rnn":
            A, c = rf.rnn_step_forward(X[:, :, t], A, W, b, tanh)
        else:
            A, C, c = rf.lstm_step_forward(X[:, :, t], A, C, W, b, tanh, get_activation("Sigmoid"))
        steps.append(c)
        outs.append(A)
    assert_close(xp.stack(outs, axis=2), Y, backend=backend)

    dA, dC, dXs = None, None, [None] * n_t
    dW_sum, db_sum = xp.zeros_like(W), xp.zeros_like(b)
    for t in range(n_t - 1, -1, -1):
        g = dY[:, :, t] if dA is None else dY[:, :, t] + dA
        if kind == "rnn":
            dXs[t], dA, dW_t, db_t = rf.rnn_step_backward(g, steps[t])
        else:
            dXs[t], dA, dC, dW_t, db_t = rf.lstm_step_backward(g, dC, steps[t])
        dW_sum, db_sum = dW_sum + dW_t, db_sum + db_t
    assert_close(xp.stack(dXs, axis=2), dX, backend=backend)
    assert_close(dW_sum, dW, backend=backend)
    assert_close(db_sum, db, backend=backend)


class _PlainTanh(Tanh):
    """A Tanh that the kernels do not recognise, so they take the generic ``backward(z, dy)`` path."""


class _PlainSigmoid(Sigmoid):
    """A Sigmoid taking the generic path (its own ``fn`` and ``backward``)."""


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_generic_activation_path_matches_fast_path(backend64, kind):
    rng = np.random.default_rng(4)
    X = backend64.asarray(rng.standard_normal((N_EX, N_IN, 3)))
    dY = backend64.asarray(rng.standard_normal((N_EX, N_OUT, 3)))
    results = []
    for act, gate in ((Tanh(), Sigmoid()), (_PlainTanh(), _PlainSigmoid())):
        if kind == "rnn":
            P = {k: backend64.asarray(v) for k, v in _rnn_params(np.random.default_rng(5)).items()}
            W, b = rf.rnn_pack(P["Wax"], P["Waa"], P["bx"], P["ba"])
            Y, cache = rf.rnn_forward(X, W, b, act)
            results.append((Y, *rf.rnn_backward(dY, cache)))
        else:
            P = {k: backend64.asarray(v) for k, v in _lstm_params(np.random.default_rng(5)).items()}
            W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
            Y, cache = rf.lstm_forward(X, W, b, act, gate)
            results.append((Y, *rf.lstm_backward(dY, cache)))
    for fast, generic in zip(*results, strict=True):
        assert_close(fast, generic, backend=backend64)


def test_sigmoid_gate_does_not_overflow(backend):
    """Huge pre-activations saturate the gates without warnings (RuntimeWarning is an error here)."""
    rng = np.random.default_rng(6)
    P = {k: backend.asarray(1e4 * v) for k, v in _lstm_params(rng).items()}
    W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
    X = backend.asarray(rng.standard_normal((N_EX, N_IN, 3)))
    Y, cache = rf.lstm_forward(X, W, b, get_activation("Tanh"), get_activation("Sigmoid"))
    dX, *_ = rf.lstm_backward(backend.xp.ones_like(Y), cache)
    xp = backend.xp
    assert bool(xp.all(xp.isfinite(Y))) and bool(xp.all(xp.isfinite(dX)))
    assert bool(xp.all(xp.abs(Y) <= 1.0))


def test_pack_layout(backend):
    """The packed LSTM weight holds the gates as column blocks in LSTM_GATES order, A rows first."""
    rng = np.random.default_rng(7)
    host = {k: _host(backend, v) for k, v in _lstm_params(rng).items()}
    P = {k: backend.asarray(v) for k, v in host.items()}
    W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
    assert rf.LSTM_GATES == ("f", "u", "o", "c")
    for k, g in enumerate(rf.LSTM_GATES):
        assert_close(W[:, k * N_OUT:(k + 1) * N_OUT], host[f"W{g}"], backend=backend, rtol=0, atol=0)
        assert_close(b[k * N_OUT:(k + 1) * N_OUT], host[f"b{g}"], backend=backend, rtol=0, atol=0)
    for name, value in rf.lstm_unpack(W, b).items():
        assert_close(value, host[name], backend=backend, rtol=0, atol=0)

    hr = {k: _host(backend, v) for k, v in _rnn_params(rng).items()}
    R = {k: backend.asarray(v) for k, v in hr.items()}
    W, b = rf.rnn_pack(R["Wax"], R["Waa"], R["bx"], R["ba"])
    assert tuple(W.shape) == (N_OUT + N_IN, N_OUT)
    assert_close(W[:N_OUT, :], hr["Waa"], backend=backend, rtol=0, atol=0)
    assert_close(W[N_OUT:, :], hr["Wax"], backend=backend, rtol=0, atol=0)
    assert_close(b, R["bx"] + R["ba"], backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_default_initial_state_is_zero(backend, kind):
    rng = np.random.default_rng(8)
    X = backend.asarray(rng.standard_normal((N_EX, N_IN, 3)))
    zeros = backend.xp.zeros((N_EX, N_OUT), dtype=X.dtype, device=X.device)
    tanh = get_activation("Tanh")
    if kind == "rnn":
        P = {k: backend.asarray(v) for k, v in _rnn_params(rng).items()}
        W, b = rf.rnn_pack(P["Wax"], P["Waa"], P["bx"], P["ba"])
        Y0, _ = rf.rnn_forward(X, W, b, tanh)
        Y1, _ = rf.rnn_forward(X, W, b, tanh, A0=zeros)
    else:
        P = {k: backend.asarray(v) for k, v in _lstm_params(rng).items()}
        W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
        Y0, _ = rf.lstm_forward(X, W, b, tanh, get_activation("Sigmoid"))
        Y1, _ = rf.lstm_forward(X, W, b, tanh, get_activation("Sigmoid"), A0=zeros, C0=zeros)
    assert_close(Y0, Y1, backend=backend)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "lstm-generic"])
def test_workspace_reuse_gives_the_same_results(backend, kind):
    """One workspace through calls of different shapes; outputs never alias it."""
    rng = np.random.default_rng(9)
    tanh, sig = get_activation("Tanh"), get_activation("Sigmoid")
    if kind == "rnn":
        P = {k: backend.asarray(v) for k, v in _rnn_params(rng).items()}
        W, b = rf.rnn_pack(P["Wax"], P["Waa"], P["bx"], P["ba"])

        def run(X, dY, ws):
            Y, cache = rf.rnn_forward(X, W, b, tanh, workspace=ws)
            return Y, rf.rnn_backward(dY, cache)
    else:
        P = {k: backend.asarray(v) for k, v in _lstm_params(rng).items()}
        W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
        act = _PlainTanh() if kind == "lstm-generic" else tanh

        def run(X, dY, ws):
            Y, cache = rf.lstm_forward(X, W, b, act, sig, workspace=ws)
            return Y, rf.lstm_backward(dY, cache)

    ws: dict = {}
    kept = []
    for n_ex, n_t in [(3, 5), (2, 2), (3, 5)]:
        X = backend.asarray(rng.standard_normal((n_ex, N_IN, n_t)))
        dY = backend.asarray(rng.standard_normal((n_ex, N_OUT, n_t)))
        Y, grads = run(X, dY, ws)
        Y_ref, grads_ref = run(X, dY, None)
        assert_close(Y, Y_ref, backend=backend, rtol=0, atol=0)
        for got, want in zip(grads, grads_ref, strict=True):
            assert_close(got, want, backend=backend, rtol=0, atol=0)
        kept.append((Y, anyml.to_numpy(Y).copy(), grads[0], anyml.to_numpy(grads[0]).copy()))
    for Y, Y_host, dX, dX_host in kept:
        assert_close(Y, Y_host, backend=backend, rtol=0, atol=0)
        assert_close(dX, dX_host, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("steps_per_chunk", [1, 2, 3])
def test_lstm_backward_in_chunks_of_timesteps(backend, monkeypatch, steps_per_chunk):
    """The backward factors made a few timesteps at a time (a small chunk budget) give the same
    gradients as made for the whole sequence at once."""
    rng = np.random.default_rng(10)
    n_t = 5
    P = {k: backend.asarray(v) for k, v in _lstm_params(rng).items()}
    W, b = rf.lstm_pack(*(P[f"W{g}"] for g in "fuco"), *(P[f"b{g}"] for g in "fuco"))
    X = backend.asarray(rng.standard_normal((N_EX, N_IN, n_t)))
    dY = backend.asarray(rng.standard_normal((N_EX, N_OUT, n_t)))
    dA, dC = (backend.asarray(rng.standard_normal((N_EX, N_OUT))) for _ in range(2))
    tanh, sig = get_activation("Tanh"), get_activation("Sigmoid")

    def run():
        _, cache = rf.lstm_forward(X, W, b, tanh, sig)
        return rf.lstm_backward(dY, cache, dA_last=dA, dC_last=dC)

    with anyml.backend.use_fast_paths(False):
        whole = run()
        bits = backend.xp.finfo(X.dtype).bits
        monkeypatch.setattr(rf, "chunk_bytes", lambda like: steps_per_chunk * 4 * N_EX * N_OUT * bits)
        chunked = run()
    for got, want in zip(chunked, whole, strict=True):
        assert_close(got, want, backend=backend, rtol=0, atol=0)


def test_only_the_classes_themselves_are_differentiated_from_their_output():
    from anyml.activations import Identity, ReLU
    from anyml.functional.activations import output_derivative

    assert output_derivative(Tanh()) == "tanh"
    assert output_derivative(Sigmoid()) == "sigmoid"
    assert output_derivative(Identity()) == "identity"
    assert output_derivative(ReLU()) is None

    class MyTanh(Tanh):
        pass

    assert output_derivative(MyTanh()) is None


def test_the_kernels_do_not_import_the_activation_classes():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(rf))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not any(name == "anyml.activations" or name.startswith("anyml.layers")
                   for name in imported if name)
