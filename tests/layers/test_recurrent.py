"""RNNCell, RNN, LSTMCell, LSTM: against PyTorch, finite differences, the state lifecycle and the API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.dense import FullyConnected
from anyml.layers.recurrent import LSTM, RNN, LSTMCell, RNNCell
from anyml.testing import assert_close, gradcheck

N_EX, N_IN, N_OUT = 3, 4, 5
LAYERS = {"RNN": RNN, "LSTM": LSTM, "RNNCell": RNNCell, "LSTMCell": LSTMCell}
SEQUENCES = {"RNNCell": RNN, "LSTMCell": LSTM}
# torch's gate blocks are (input, forget, candidate, output); anyml's update gate is torch's input gate.
TORCH_LSTM_ORDER = "ufco"


def _at(out):
    """The hidden state of a forward's result (``LSTMCell`` returns ``(At, Ct)``)."""
    return out[0] if isinstance(out, tuple) else out


def _is_lstm(layer) -> bool:
    return isinstance(layer, LSTM | LSTMCell)


def _host_params(layer) -> dict[str, np.ndarray]:
    return {k: anyml.to_numpy(v).astype(np.float64) for k, v in layer.parameters.items()}


def _torch_module(layer):
    """The torch module computing what ``layer`` computes, with its weights, in float64."""
    import torch

    P, n_in, n = _host_params(layer), layer.n_in, layer.n_out
    cell = isinstance(layer, RNNCell | LSTMCell)
    if _is_lstm(layer):
        w_ih = np.concatenate([P[f"W{g}"][n:].T for g in TORCH_LSTM_ORDER])
        w_hh = np.concatenate([P[f"W{g}"][:n].T for g in TORCH_LSTM_ORDER])
        b_ih, b_hh = np.concatenate([P[f"b{g}"] for g in TORCH_LSTM_ORDER]), np.zeros(4 * n)
        module = (torch.nn.LSTMCell(n_in, n, dtype=torch.float64) if cell else
                  torch.nn.LSTM(n_in, n, batch_first=True, dtype=torch.float64))
    else:
        w_ih, w_hh, b_ih, b_hh = P["Wax"].T, P["Waa"].T, P["bx"], P["ba"]
        module = (torch.nn.RNNCell(n_in, n, dtype=torch.float64) if cell else
                  torch.nn.RNN(n_in, n, batch_first=True, dtype=torch.float64))
    suffix = "" if cell else "_l0"
    with torch.no_grad():
        for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                            ("bias_hh", b_hh)):
            getattr(module, name + suffix).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module, suffix


def _torch_grads(layer, module, suffix) -> dict[str, np.ndarray]:
    """The torch module's weight gradients in anyml's names and layouts."""
    g = {name: getattr(module, name + suffix).grad.numpy()
         for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    n = layer.n_out
    if not _is_lstm(layer):
        return {"Wax": g["weight_ih"].T, "Waa": g["weight_hh"].T, "bx": g["bias_ih"], "ba": g["bias_hh"]}
    out = {}
    for k, gate in enumerate(TORCH_LSTM_ORDER):
        rows = slice(k * n, (k + 1) * n)
        out[f"W{gate}"] = np.concatenate([g["weight_hh"][rows].T, g["weight_ih"][rows].T], axis=0)
        out[f"b{gate}"] = g["bias_ih"][rows]
    return out


def _data(backend, n_t, seed=0):
    """Input and upstream gradient as host float64 values representable in the backend's dtype."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_EX, N_IN, n_t)).astype(backend.dtype_name).astype(np.float64)
    dY = rng.standard_normal((N_EX, N_OUT, n_t)).astype(backend.dtype_name).astype(np.float64)
    return X, dY


# --------------------------------------------------------------------------- against PyTorch
@pytest.mark.parametrize("n_t", [1, 2, 5])
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_sequence_matches_torch(backend, kind, n_t):
    torch = pytest.importorskip("torch")
    X, dY = _data(backend, n_t, seed=n_t)
    layer = LAYERS[kind](N_OUT, backend=backend)
    Y = layer.forward(backend.asarray(X))
    dX = layer.backward(backend.asarray(dY))

    module, suffix = _torch_module(layer)
    Xt = torch.tensor(X.transpose(0, 2, 1), requires_grad=True)
    out, _ = module(Xt)
    out.backward(torch.from_numpy(dY.transpose(0, 2, 1).copy()))
    assert tuple(Y.shape) == (N_EX, N_OUT, n_t) and tuple(dX.shape) == (N_EX, N_IN, n_t)
    assert_close(Y, out.detach().numpy().transpose(0, 2, 1), backend=backend)
    assert_close(dX, Xt.grad.numpy().transpose(0, 2, 1), backend=backend)
    expected = _torch_grads(layer, module, suffix)
    assert set(layer.gradients) == set(expected)
    for name, grad in expected.items():
        assert_close(layer.gradients[name], grad, backend=backend, err_msg=name)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell"])
def test_cell_matches_torch_steps(backend, kind):
    """Two cell steps (the second from a non-zero state) and two backward calls, against torch."""
    torch = pytest.importorskip("torch")
    X, dY = _data(backend, 2, seed=3)
    cell = LAYERS[kind](N_OUT, backend=backend)
    A = [_at(cell.forward(backend.asarray(np.ascontiguousarray(X[:, :, t])))) for t in range(2)]
    dX1 = cell.backward(backend.asarray(np.ascontiguousarray(dY[:, :, 1])))
    dX0 = cell.backward(backend.asarray(np.ascontiguousarray(dY[:, :, 0])))

    module, suffix = _torch_module(cell)
    Xt = torch.tensor(X, requires_grad=True)
    state, outs = None, []
    for t in range(2):
        state = module(Xt[:, :, t], state)
        outs.append(state[0] if isinstance(state, tuple) else state)
    torch.autograd.backward(outs, [torch.from_numpy(dY[:, :, t].copy()) for t in range(2)])
    for t in range(2):
        assert_close(A[t], outs[t].detach().numpy(), backend=backend)
    assert_close(dX0, Xt.grad[:, :, 0].numpy(), backend=backend)
    assert_close(dX1, Xt.grad[:, :, 1].numpy(), backend=backend)
    for name, grad in _torch_grads(cell, module, suffix).items():
        assert_close(cell.gradients[name], grad, backend=backend, err_msg=name)


# --------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize(("kind", "kwargs"), [
    ("RNN", {}), ("RNN", {"act_fn": "SoftPlus"}),
    ("LSTM", {}), ("LSTM", {"act_fn": "ELU", "gate_fn": "SoftPlus"}),
])
def test_gradcheck_sequence(backend64, kind, kwargs):
    layer = LAYERS[kind](3, backend=backend64, **kwargs)
    gradcheck(layer, [backend64.rng.normal((2, 3, 3))])


def _run_cell(cell, X, retain):
    cell.reset_state()
    xp = cell.xp
    return xp.stack([_at(cell.forward(X[:, :, t], retain_derived=retain)) for t in range(X.shape[2])],
                    axis=2)


def _back_cell(cell, dY):
    n_t = dY.shape[2]
    dX = [cell.backward(dY[:, :, t]) for t in range(n_t - 1, -1, -1)]
    return cell.xp.stack(dX[::-1], axis=2)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell"])
def test_gradcheck_cell_over_a_sequence(backend64, kind):
    cell = LAYERS[kind](3, backend=backend64)
    gradcheck(cell, [backend64.rng.normal((2, 3, 3))],
              forward=lambda xs, retain: _run_cell(cell, xs[0], retain),
              backward=lambda dY: _back_cell(cell, dY))


# --------------------------------------------------------------------------- state and training
@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell"])
def test_cells_agree_with_sequence_layer_over_minibatches(backend64, kind):
    """forward / backward / update on three minibatches: each matches the sequence layer's results."""
    cell = LAYERS[kind](N_OUT, optimizer="SGD(lr=0.1)", backend=backend64)
    seq = SEQUENCES[kind](N_OUT, optimizer="SGD(lr=0.1)", backend=backend64)
    rng = np.random.default_rng(5)
    for step, (n_ex, n_t) in enumerate([(3, 4), (2, 1), (5, 3)]):
        X = backend64.asarray(rng.standard_normal((n_ex, N_IN, n_t)))
        dY = backend64.asarray(rng.standard_normal((n_ex, N_OUT, n_t)))
        Y_cell = _run_cell(cell, X, True)
        if step == 0:
            seq.set_params({"parameters": cell.summary()["parameters"]})
        Y_seq = seq.forward(X)
        assert_close(Y_cell, Y_seq, backend=backend64, err_msg=f"minibatch {step}")
        assert_close(_back_cell(cell, dY), seq.backward(dY), backend=backend64)
        for name in cell.gradients:
            assert_close(cell.gradients[name], seq.gradients[name], backend=backend64, err_msg=name)
        cell.update()
        seq.update()
        assert cell.state == {} and not cell._caches
        for name in cell.parameters:
            assert_close(cell.parameters[name], seq.parameters[name], backend=backend64)


def test_lstm_cell_returns_hidden_and_cell_state(backend64):
    """The spec's ``At, Ct = cell.forward(Xt)``, whatever the batch size (2 rows must not split)."""
    cell = LSTMCell(N_OUT, backend=backend64)
    X = backend64.rng.normal((2, N_IN, 3))
    seq = LSTM(N_OUT, backend=backend64)
    out = cell.forward(X[:, :, 0])
    assert isinstance(out, tuple) and len(out) == 2
    At, Ct = out
    assert tuple(At.shape) == tuple(Ct.shape) == (2, N_OUT)
    assert_close(At, cell.state["A"], backend=backend64, rtol=0, atol=0)
    assert_close(Ct, cell.state["C"], backend=backend64, rtol=0, atol=0)
    seq.set_params({"parameters": cell.summary()["parameters"]})
    Y = seq.forward(X[:, :, :2])
    At2, Ct2 = cell.forward(X[:, :, 1])
    assert_close(At2, Y[:, :, 1], backend=backend64)
    # Ct against the equations: C = Gf * C_prev + Gu * Cc, from the cached gates
    P = {k: anyml.to_numpy(v) for k, v in cell.parameters.items()}
    Z = np.concatenate([anyml.to_numpy(At), anyml.to_numpy(X[:, :, 1])], axis=1)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    Gf, Gu = sig(Z @ P["Wf"] + P["bf"]), sig(Z @ P["Wu"] + P["bu"])
    Cc = np.tanh(Z @ P["Wc"] + P["bc"])
    assert_close(Ct2, Gf * anyml.to_numpy(Ct) + Gu * Cc, backend=backend64)
    assert tuple(cell.backward(backend64.xp.ones_like(At2)).shape) == (2, N_IN)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell"])
def test_cell_state_lifecycle(backend64, kind):
    cell = LAYERS[kind](N_OUT, backend=backend64)
    X = backend64.rng.normal((2, N_IN, 3))
    first = _at(cell.forward(X[:, :, 0]))
    assert set(cell.state) == ({"A", "C"} if kind == "LSTMCell" else {"A"})
    assert_close(cell.state["A"], first, backend=backend64)
    cell.forward(X[:, :, 1])
    cell.reset_state()
    assert cell.state == {}
    with pytest.raises(RuntimeError, match=kind):
        cell.backward(backend64.rng.normal((2, N_OUT)))
    assert_close(_at(cell.forward(X[:, :, 0])), first, backend=backend64)
    with pytest.raises(ValueError, match=rf"{kind}: expected Xt with 2 examples .* reset_state\(\)"):
        cell.forward(backend64.rng.normal((3, N_IN)))


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_sequence_layers_start_each_forward_from_zero_and_share_weights(backend64, kind):
    layer = LAYERS[kind](N_OUT, backend=backend64)
    X1, X2 = backend64.rng.normal((2, N_IN, 3)), backend64.rng.normal((4, N_IN, 2))
    dY1, dY2 = backend64.rng.normal((2, N_OUT, 3)), backend64.rng.normal((4, N_OUT, 2))
    Y1 = layer.forward(X1)
    Y1_host = anyml.to_numpy(Y1).copy()
    layer.forward(X2)
    assert len(layer.derived_variables["A"]) == 2
    assert_close(layer.forward(X1, retain_derived=False), Y1, backend=backend64)
    dX2, dX1 = layer.backward(dY2), layer.backward(dY1)
    total = {k: anyml.to_numpy(v).copy() for k, v in layer.gradients.items()}
    layer.flush_gradients()
    layer.forward(X1)
    assert_close(layer.backward(dY1), dX1, backend=backend64)
    layer.forward(X2)
    assert_close(layer.backward(dY2), dX2, backend=backend64)
    for name, value in total.items():
        assert_close(layer.gradients[name], value, backend=backend64, err_msg=name)
    assert_close(Y1, Y1_host, backend=backend64, rtol=0, atol=0)  # outputs never share memory


@pytest.mark.parametrize("kind", list(LAYERS))
def test_frozen_and_retain_grads_false_keep_gradients_at_zero(backend64, kind):
    layer = LAYERS[kind](N_OUT, backend=backend64)
    cell = kind.endswith("Cell")
    X = backend64.rng.normal((2, N_IN) if cell else (2, N_IN, 3))
    dY = backend64.rng.normal((2, N_OUT) if cell else (2, N_OUT, 3))
    layer.forward(X)
    dX = layer.backward(dY, retain_grads=False)
    if cell:
        layer.reset_state()
    layer.freeze()
    layer.forward(X)
    assert_close(layer.backward(dY), dX, backend=backend64)
    for grad in layer.gradients.values():
        assert not bool(backend64.xp.any(grad != 0))


def test_small_lstm_learns_to_predict_a_sine():
    """LSTM + FullyConnected head, squared error, plain loops: the loss falls below 5% of its start."""
    be = anyml.make_backend("numpy", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    n_t, n_ex = 12, 16
    lstm = LSTM(16, optimizer="Adam(lr=0.02)", backend=be)
    head = FullyConnected(1, optimizer="Adam(lr=0.02)", backend=be)
    losses = []
    for _ in range(150):
        phase = rng.uniform(0, 2 * np.pi, (n_ex, 1))
        wave = np.sin(phase + 0.5 * np.arange(n_t + 1))
        X, target = wave[:, None, :-1], wave[:, 1:]
        H = lstm.forward(be.asarray(X))                                  # (n_ex, 16, n_t)
        Hs = np.ascontiguousarray(H.transpose(0, 2, 1)).reshape(-1, 16)  # every step to the head
        err = head.forward(Hs)[:, 0] - target.reshape(-1)
        losses.append(float(np.mean(err**2)))
        dHs = head.backward((2.0 / err.size) * err[:, None])
        lstm.backward(np.ascontiguousarray(dHs.reshape(n_ex, n_t, 16).transpose(0, 2, 1)))
        lstm.update()
        head.update()
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])


# --------------------------------------------------------------------------- the usual layer checks
@pytest.mark.parametrize("kind", list(LAYERS))
def test_same_seed_same_parameters_on_every_backend(backend, kind):
    shape = (2, N_IN) if kind.endswith("Cell") else (2, N_IN, 3)
    ref_be = anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0)
    reference = LAYERS[kind](N_OUT, backend=ref_be)
    reference.forward(ref_be.asarray(np.ones(shape)))
    layer = LAYERS[kind](N_OUT, backend=backend)
    Y = _at(layer.forward(backend.asarray(np.ones(shape))))
    assert_close(Y, anyml.to_numpy(Y), backend=backend)  # namespace, device and dtype
    assert set(layer.parameters) == set(reference.parameters) == set(layer._trainable_names)
    for name, value in reference.parameters.items():
        assert_close(layer.parameters[name], value, backend=backend, rtol=0, atol=0)
        assert_close(layer.gradients[name], np.zeros(value.shape), backend=backend, rtol=0, atol=0)
    n = N_OUT + N_IN if _is_lstm(layer) else N_IN
    first = "Wf" if _is_lstm(layer) else "Wax"
    assert tuple(layer.parameters[first].shape) == (n, N_OUT)


@pytest.mark.parametrize(("kind", "kwargs"), [
    ("RNN", {"act_fn": "ReLU", "init": "he_normal"}),
    ("LSTM", {"act_fn": "Tanh", "gate_fn": "HardSigmoid", "init": "glorot_normal"}),
    ("RNNCell", {"act_fn": "LeakyReLU(alpha=0.1)"}),
    ("LSTMCell", {"gate_fn": "Sigmoid", "optimizer": "Adam(lr=0.01)"}),
])
def test_summary_round_trip(backend, kind, kwargs):
    layer = LAYERS[kind](N_OUT, backend=backend, **kwargs)
    X = backend.rng.normal((3, N_IN) if kind.endswith("Cell") else (3, N_IN, 4))
    Y = _at(layer.forward(X, retain_derived=False))
    summary = layer.summary()
    assert summary["layer"] == kind
    assert summary["hyperparameters"]["n_in"] == N_IN
    for key in ("act_fn", "gate_fn"):
        if key in kwargs:
            assert summary["hyperparameters"][key] == kwargs[key]
    fresh = LAYERS[kind](1, backend=backend).set_params(summary)
    assert fresh.n_out == N_OUT and fresh.n_in == N_IN
    assert fresh.hyperparameters == layer.hyperparameters
    assert_close(_at(fresh.forward(X)), Y, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_set_params_accepts_numpy_ml_bias_layout(backend, kind):
    layer = LAYERS[kind](N_OUT, backend=backend)
    X = backend.rng.normal((2, N_IN, 3))
    Y = layer.forward(X, retain_derived=False)
    params = {k: v.reshape(1, -1) if k.startswith("b") else v
              for k, v in layer.summary()["parameters"].items()}
    fresh = LAYERS[kind](N_OUT, backend=backend).set_params({"parameters": params})
    assert fresh.n_in == N_IN
    assert tuple(fresh.parameters["bf" if kind == "LSTM" else "bx"].shape) == (N_OUT,)
    assert_close(fresh.forward(X), Y, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize(("kind", "params", "match"), [
    ("LSTM", {"Wf": np.zeros((N_OUT, N_OUT))}, r"LSTM.set_params: parameter 'Wf' should have shape"),
    ("LSTMCell", {"Wu": np.zeros((N_OUT + 2, 3))}, r"LSTMCell.set_params: parameter 'Wu'"),
    ("RNN", {"Wax": np.zeros((2, N_OUT)), "Waa": np.zeros((3, 3))}, r"RNN.set_params: parameter 'Waa'"),
])
def test_set_params_rejects_bad_shapes(kind, params, match):
    with pytest.raises(ValueError, match=match):
        LAYERS[kind](N_OUT).set_params({"parameters": params})


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_sequence_errors(backend, kind):
    layer = LAYERS[kind](N_OUT, backend=backend)
    with pytest.raises(RuntimeError, match=f"{kind}: backward called with no retained forward"):
        layer.backward(backend.rng.normal((2, N_OUT, 3)))
    with pytest.raises(ValueError, match=rf"{kind}: expected X of shape \(n_ex, n_in, n_t\), got \(2, 4\)"):
        layer.forward(backend.rng.normal((2, 4)))
    layer.forward(backend.rng.normal((2, N_IN, 3)))
    with pytest.raises(ValueError, match=rf"{kind}: expected X of shape \(n_ex, {N_IN}, n_t\)"):
        layer.forward(backend.rng.normal((2, N_IN + 1, 3)))
    with pytest.raises(ValueError, match=rf"{kind}: expected X with at least one timestep"):
        layer.forward(backend.rng.normal((2, N_IN, 0)))
    with pytest.raises(ValueError, match=f"{kind}: expected dLdA with 3 timesteps .* got 4"):
        layer.backward(backend.rng.normal((2, N_OUT, 4)))
    with pytest.raises(ValueError, match=rf"{kind}: expected dLdA of shape \(2, {N_OUT}, 3\)"):
        layer.backward(backend.rng.normal((2, N_OUT + 1, 3)))
    with pytest.raises(ValueError, match=rf"{kind}: expected dLdA of shape \(2, {N_OUT}, 3\)"):
        layer.backward(backend.rng.normal((2, N_OUT)))
    foreign = np.ones((2, N_IN, 3), dtype=backend.dtype_name) if backend.name != "numpy" else [[1.0]]
    with pytest.raises(TypeError, match=f"{kind}: expected X to be a"):
        layer.forward(foreign)
    other = "float64" if backend.dtype_name == "float32" else "float32"
    with pytest.raises(TypeError, match=f"{kind}: expected dLdA of dtype {backend.dtype_name}"):
        layer.backward(backend.xp.astype(backend.rng.normal((2, N_OUT, 3)), getattr(backend.xp, other)))
    layer.backward(backend.rng.normal((2, N_OUT, 3)))  # the failed calls left the pass in place


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell"])
def test_cell_errors(backend, kind):
    cell = LAYERS[kind](N_OUT, backend=backend)
    with pytest.raises(RuntimeError, match=f"{kind}: backward called with no retained forward"):
        cell.backward(backend.rng.normal((2, N_OUT)))
    with pytest.raises(ValueError, match=rf"{kind}: expected Xt of shape \(n_ex, n_in\), got \(2, 4, 3\)"):
        cell.forward(backend.rng.normal((2, 4, 3)))
    cell.forward(backend.rng.normal((2, N_IN)))
    with pytest.raises(ValueError, match=rf"{kind}: expected Xt of shape \(n_ex, {N_IN}\)"):
        cell.forward(backend.rng.normal((2, N_IN + 1)))
    with pytest.raises(ValueError, match=rf"{kind}: expected dLdAt of shape \(2, {N_OUT}\)"):
        cell.backward(backend.rng.normal((2, N_OUT, 1)))
    foreign = np.ones((2, N_IN), dtype=backend.dtype_name) if backend.name != "numpy" else [[1.0]]
    with pytest.raises(TypeError, match=f"{kind}: expected Xt to be a"):
        cell.forward(foreign)
    cell.forward(backend.rng.normal((2, N_IN)), retain_derived=False)
    cell.backward(backend.rng.normal((2, N_OUT)))  # the failed calls left the retained step in place


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n_out": 0}, ValueError, "n_out must be a positive integer, got 0"),
    ({"n_out": 2.5}, ValueError, "n_out must be a positive integer"),
    ({"n_out": True}, ValueError, "n_out must be a positive integer"),
    ({"n_out": 2, "act_fn": "tanhh"}, ValueError, "bad act_fn 'tanhh'.*unknown activation"),
    ({"n_out": 2, "init": "glorot_unifrm"}, ValueError, "bad init 'glorot_unifrm'"),
    ({"n_out": 2, "optimizer": "Adamm"}, ValueError, "unknown optimizer 'Adamm'"),
])
def test_bad_constructor_arguments(kind, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        LAYERS[kind](**kwargs)
    if "optimizer" not in kwargs:
        assert kind in str(info.value)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_bad_gate_fn(kind):
    with pytest.raises(ValueError, match=f"{kind}: bad gate_fn 'sigmoidd'"):
        LAYERS[kind](2, gate_fn="sigmoidd")


@pytest.mark.parametrize("kind", list(LAYERS))
def test_to_moves_the_layer(backend, kind):
    source = anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0)
    layer = LAYERS[kind](N_OUT, backend=source)
    shape = (2, N_IN) if kind.endswith("Cell") else (2, N_IN, 3)
    X = np.random.default_rng(0).standard_normal(shape)
    expected = anyml.to_numpy(_at(layer.forward(source.asarray(X))))
    layer.to(backend)
    if kind.endswith("Cell"):
        assert layer.state == {}
    assert_close(_at(layer.forward(backend.asarray(X))), expected, backend=backend)
    layer.backward(backend.asarray(np.ones((*shape[:1], N_OUT, *shape[2:]))))
    layer.update()
    assert all(backend.owns(v) for v in layer.parameters.values())
