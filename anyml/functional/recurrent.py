r"""Recurrent cells and sequences: the Elman RNN and the LSTM, forward and backward through time.

Everything here is stateless and written against the Array API standard. The parameters travel in a
*packed* form, so that every timestep costs a single matrix product:

* RNN: ``W`` of shape ``(n_out + n_in, n_out)`` whose first ``n_out`` rows act on the previous hidden
  state and whose last ``n_in`` rows act on the input, and ``b = bx + ba`` of shape ``(n_out,)``
  (:func:`rnn_pack` / :func:`rnn_unpack` convert from and to ``Wax, Waa, bx, ba``).
* LSTM: ``W`` of shape ``(n_out + n_in, 4 n_out)`` acting on :math:`Z = [A_{t-1}, X_t]`, its column
  blocks holding the forget, update, output and candidate gates in that order (:data:`LSTM_GATES`), and
  ``b`` of shape ``(4 n_out,)`` (:func:`lstm_pack` / :func:`lstm_unpack`).

The whole-sequence functions take inputs of shape ``(n_ex, n_in, n_t)``. They lay the step inputs
:math:`Z_t = [A_{t-1}, X_t]` of all timesteps out in one ``(n_t + 1, n_ex, n_out + n_in)`` buffer, run
one ``Z_t @ W`` product per step, and in the backward pass gather the per-step gradients of the
pre-activations so that the weight gradient and the input gradient come from one matrix product each
over all timesteps. Their buffers can live in a caller-kept ``workspace`` dict, reused from call to call
(see :mod:`anyml.functional._workspace`): the per-step values then go into memory already in hand
instead of megabytes of fresh pages per call, which is most of the cost of a small recurrent layer
otherwise.

Tanh, Sigmoid and Identity are differentiated from their outputs (:math:`1 - a^2`, :math:`s(1 - s)`),
which saves recomputing them; any other activation is differentiated through its ``backward(z, dy)``.
"""

from __future__ import annotations

from typing import Any

from anyml.backend import Array, chunk_bytes, namespace_of, replaceable
from anyml.functional._workspace import buffer
from anyml.functional.activations import activation_backward, activation_forward, output_derivative

__all__ = [
    "LSTM_GATES",
    "lstm_backward",
    "lstm_cell_update",
    "lstm_forward",
    "lstm_pack",
    "lstm_step_backward",
    "lstm_step_forward",
    "lstm_unpack",
    "rnn_backward",
    "rnn_forward",
    "rnn_pack",
    "rnn_step_backward",
    "rnn_step_forward",
    "rnn_unpack",
]

#: The order of the gate blocks in the columns of a packed LSTM weight: forget, update (input),
#: output, candidate. The three sigmoid gates come first so one call activates all of them.
LSTM_GATES = ("f", "u", "o", "c")


# --------------------------------------------------------------------------- activations
_act_forward = activation_forward
_act_backward = activation_backward


def _is_fast(act: Any) -> bool:
    """Whether ``act`` is differentiated from its output (Tanh, Sigmoid, Identity)."""
    return output_derivative(act) is not None


def _standard_lstm(act_fn: Any, gate_fn: Any) -> bool:
    """Tanh activation and sigmoid gates: the case with fused kernels (see :func:`lstm_forward`)."""
    return output_derivative(act_fn) == "tanh" and output_derivative(gate_fn) == "sigmoid"


def _transposed(W: Array, xp: Any) -> Array:
    """``W.T`` as a fresh row-major array: a product with it in every timestep runs faster than one
    with a transposed view (the round trip through a flat reshape is what forces the copy)."""
    rows, cols = W.shape
    return xp.reshape(xp.reshape(xp.matrix_transpose(W), (rows * cols,)), (cols, rows))


# --------------------------------------------------------------------------- packing
def rnn_pack(Wax: Array, Waa: Array, bx: Array, ba: Array, xp: Any = None) -> tuple[Array, Array]:
    """Pack the RNN parameters into ``W = [[Waa], [Wax]]`` of shape ``(n_out + n_in, n_out)`` and
    ``b = bx + ba`` of shape ``(n_out,)``."""
    xp = namespace_of(Wax) if xp is None else xp
    n_out = Waa.shape[0]
    return xp.concat([Waa, Wax], axis=0), xp.reshape(bx, (n_out,)) + xp.reshape(ba, (n_out,))


def rnn_unpack(dW: Array, db: Array, n_out: int) -> dict[str, Array]:
    """Split the gradient of a packed RNN weight and bias back into ``Wax, Waa, bx, ba``."""
    return {"Wax": dW[n_out:, :], "Waa": dW[:n_out, :], "bx": db, "ba": db}


def lstm_pack(Wf: Array, Wu: Array, Wc: Array, Wo: Array, bf: Array, bu: Array, bc: Array,
              bo: Array, xp: Any = None) -> tuple[Array, Array]:
    """Pack the LSTM gate weights ``(n_out + n_in, n_out)`` and biases ``(n_out,)`` into ``W`` of
    shape ``(n_out + n_in, 4 n_out)`` and ``b`` of shape ``(4 n_out,)``, in :data:`LSTM_GATES` order."""
    xp = namespace_of(Wf) if xp is None else xp
    n_out = Wf.shape[1]
    biases = [xp.reshape(v, (n_out,)) for v in (bf, bu, bo, bc)]
    return xp.concat([Wf, Wu, Wo, Wc], axis=1), xp.concat(biases, axis=0)


def lstm_unpack(dW: Array, db: Array) -> dict[str, Array]:
    """Split the gradient of a packed LSTM weight and bias into ``Wf, Wu, Wc, Wo, bf, bu, bc, bo``."""
    n = dW.shape[1] // 4
    out = {}
    for k, gate in enumerate(LSTM_GATES):
        out[f"W{gate}"] = dW[:, k * n:(k + 1) * n]
        out[f"b{gate}"] = db[k * n:(k + 1) * n]
    return out


# --------------------------------------------------------------------------- RNN
@replaceable
def rnn_step_forward(Xt: Array, A_prev: Array, W: Array, b: Array, act_fn: Any,
                     xp: Any = None) -> tuple[Array, tuple]:
    r"""One step of an Elman RNN, :math:`A_t = f([A_{t-1}, X_t]\,W + b)`.

    Parameters
    ----------
    Xt : array of shape (n_ex, n_in)
    A_prev : array of shape (n_ex, n_out)
        The previous hidden state.
    W, b : arrays of shapes (n_out + n_in, n_out) and (n_out,)
        The packed parameters (:func:`rnn_pack`).
    act_fn : Activation

    Returns
    -------
    A : array of shape (n_ex, n_out)
    cache : tuple
        What :func:`rnn_step_backward` needs.
    """
    xp = namespace_of(Xt) if xp is None else xp
    Z = xp.concat([A_prev, Xt], axis=1)
    pre = xp.matmul(Z, W) + b
    A = _act_forward(act_fn, xp)(pre)
    return A, (Z, W, pre, A, act_fn)


@replaceable
def rnn_step_backward(dA: Array, cache: tuple, xp: Any = None) -> tuple[Array, Array, Array, Array]:
    r"""Gradients of one RNN step.

    With :math:`dP = dA \odot f'(P)` for the pre-activation :math:`P`:
    :math:`[dA_{t-1}, dX_t] = dP\,W^\top`, :math:`dW = [A_{t-1}, X_t]^\top dP`,
    :math:`db = \sum_{\text{examples}} dP`.

    Returns
    -------
    dXt, dA_prev, dW, db
    """
    xp = namespace_of(dA) if xp is None else xp
    Z, W, pre, A, act_fn = cache
    n_out = W.shape[1]
    dP = _act_backward(act_fn)(pre, A, dA)
    dZ = xp.matmul(dP, xp.matrix_transpose(W))
    dW = xp.matmul(xp.matrix_transpose(Z), dP)
    return dZ[:, n_out:], dZ[:, :n_out], dW, xp.sum(dP, axis=0)


@replaceable
def rnn_forward(X: Array, W: Array, b: Array, act_fn: Any, A0: Array | None = None,
                workspace: dict | None = None, xp: Any = None) -> tuple[Array, tuple]:
    r"""An Elman RNN over a whole sequence.

    .. math:: A_t = f(P_t), \qquad P_t = [A_{t-1}, X_t]\,W + b, \qquad t = 1 \dots n_t

    one matrix product per timestep with the packed ``W``.

    Parameters
    ----------
    X : array of shape (n_ex, n_in, n_t)
    W, b : arrays of shapes (n_out + n_in, n_out) and (n_out,)
        The packed parameters (:func:`rnn_pack`).
    act_fn : Activation
    A0 : array of shape (n_ex, n_out), optional
        The initial hidden state; default zeros.
    workspace : dict, optional
        Buffers kept from an earlier call (start with ``{}``); the per-step values are written into
        them instead of into fresh memory. A workspace serves one forward / backward pair at a time:
        do not pass it to another forward before the backward of this one.

    Returns
    -------
    Y : array of shape (n_ex, n_out, n_t)
        The hidden state at every timestep (a fresh array, never part of the workspace).
    cache : tuple
        What :func:`rnn_backward` needs.
    """
    xp = namespace_of(X) if xp is None else xp
    n_ex, n_in, n_t = X.shape
    n = W.shape[1]
    ws = {} if workspace is None else workspace
    Z = buffer(ws, "Z", (n_t + 1, n_ex, n + n_in), X, xp)
    Z[:n_t, :, n:] = xp.permute_dims(X, (2, 0, 1))
    Z[0, :, :n] = 0.0 if A0 is None else A0
    generic = not _is_fast(act_fn)
    pres = buffer(ws, "P", (n_t, n_ex, n), X, xp) if generic else None
    f = _act_forward(act_fn, xp)
    matmul = xp.matmul
    for t in range(n_t):
        pre = matmul(Z[t, ...], W)
        pre += b
        A = f(pre)
        if pres is not None:
            pres[t, ...] = pre
        Z[t + 1, :, :n] = A
    return _hidden_states(Z, n, xp), (W, act_fn, ws)


def _hidden_states(Z: Array, n: int, xp: Any) -> Array:
    """``Y`` of shape ``(n_ex, n_out, n_t)``, a fresh array, from the hidden states that the step
    inputs ``Z`` hold in their first ``n_out`` columns (one copy for the whole sequence)."""
    n_t1, n_ex, _ = Z.shape
    Y = xp.empty((n_ex, n, n_t1 - 1), dtype=Z.dtype, device=Z.device)
    Y[...] = xp.permute_dims(Z[1:, :, :n], (1, 2, 0))
    return Y


@replaceable
def rnn_backward(dY: Array, cache: tuple, dA_last: Array | None = None,
                 xp: Any = None) -> tuple[Array, Array, Array, Array]:
    r"""Backpropagation through time for :func:`rnn_forward`.

    Going backwards in time, :math:`dA_t = dY_t + dP_{t+1} W_a^\top` and
    :math:`dP_t = dA_t \odot f'(P_t)`, where :math:`W_a` holds the first ``n_out`` rows of ``W``;
    then, over all timesteps at once, :math:`dW = \sum_t [A_{t-1}, X_t]^\top dP_t`,
    :math:`db = \sum_t \sum_{\text{examples}} dP_t` and :math:`dX_t = dP_t W_x^\top`
    (:math:`W_x`: the last ``n_in`` rows), one matrix product each.

    Parameters
    ----------
    dY : array of shape (n_ex, n_out, n_t)
        The gradient of the loss wrt. every hidden state.
    cache : tuple
        From :func:`rnn_forward`.
    dA_last : array of shape (n_ex, n_out), optional
        An extra gradient wrt. the last hidden state (from whatever consumed it afterwards).

    Returns
    -------
    dX : array of shape (n_ex, n_in, n_t)
    dW : array of shape (n_out + n_in, n_out)
    db : array of shape (n_out,)
    dA0 : array of shape (n_ex, n_out)
        The gradient wrt. the initial hidden state.
    """
    xp = namespace_of(dY) if xp is None else xp
    W, act_fn, ws = cache
    n_ex, n, n_t = dY.shape
    Z, pres = ws["Z"], ws.get("P")
    dP = buffer(ws, "dP", (n_t, n_ex, n), dY, xp)
    dYt = xp.permute_dims(dY, (2, 0, 1))
    WaT = _transposed(W[:n, :], xp)
    kind = output_derivative(act_fn)
    slopes = None  # f'(P_t) of every step from the outputs, computed once for the sequence
    if kind in ("tanh", "sigmoid"):
        A = Z[1:, :, :n]
        sq = A * A
        slopes = 1.0 - sq if kind == "tanh" else A - sq
        del sq
    grad = _act_backward(act_fn)
    matmul = xp.matmul
    carry = dA_last
    for t in range(n_t - 1, -1, -1):
        dA = dYt[t, ...] if carry is None else dYt[t, ...] + carry
        if slopes is not None:
            dp = dA * slopes[t, ...]
        elif kind == "identity":
            dp = dA
        else:
            dp = grad(None if pres is None else pres[t, ...], Z[t + 1, :, :n], dA)
        dP[t, ...] = dp
        carry = matmul(dP[t, ...], WaT)
    return (*_sequence_weight_grads(Z, dP, W, n, xp), carry)


def _sequence_weight_grads(Z: Array, dP: Array, W: Array, n: int, xp: Any) -> tuple[Array, Array, Array]:
    """``(dX, dW, db)`` from the stacked step inputs ``Z`` and pre-activation gradients ``dP``."""
    n_t, n_ex, k = dP.shape
    n_in = W.shape[0] - n
    dPs = xp.reshape(dP, (n_t * n_ex, k))
    dW = xp.matmul(xp.matrix_transpose(xp.reshape(Z[:n_t, ...], (n_t * n_ex, n + n_in))), dPs)
    dXs = xp.matmul(dPs, xp.matrix_transpose(W[n:, :]))
    dX = xp.permute_dims(xp.reshape(dXs, (n_t, n_ex, n_in)), (1, 2, 0))
    return dX, dW, xp.sum(dPs, axis=0)


# --------------------------------------------------------------------------- LSTM
def _lstm_gates(pre: Array, C_prev: Array, n: int, act: Any, gate: Any) -> tuple:
    """Gate outputs, new cell state and new hidden state from the packed pre-activation."""
    S = gate(pre[:, :3 * n])
    Cc = act(pre[:, 3 * n:])
    C = S[:, :n] * C_prev + S[:, n:2 * n] * Cc
    TC = act(C)
    return S, Cc, C, TC, S[:, 2 * n:] * TC


def _lstm_gates_backward(dA: Array, dC: Array | None, pre: Array | None, S: Array, Cc: Array,
                         C: Array, TC: Array, C_prev: Array, n: int, act_grad: Any, gate_grad: Any,
                         xp: Any) -> tuple[Array, Array, Array]:
    """``(dP_gates, dP_candidate, dC_prev)``: the gradient of the packed pre-activation, as its
    sigmoid-gate and candidate column blocks, and that of the previous cell state."""
    Gf, Gu, Go = S[:, :n], S[:, n:2 * n], S[:, 2 * n:]
    dCt = act_grad(C, TC, dA * Go)
    if dC is not None:
        dCt += dC
    dS = xp.concat([dCt * C_prev, dCt * Cc, dA * TC], axis=1)
    pre_gates = None if pre is None else pre[:, :3 * n]
    pre_cand = None if pre is None else pre[:, 3 * n:]
    return (gate_grad(pre_gates, S, dS), act_grad(pre_cand, Cc, dCt * Gu), dCt * Gf)


@replaceable
def lstm_step_forward(Xt: Array, A_prev: Array, C_prev: Array, W: Array, b: Array, act_fn: Any,
                      gate_fn: Any, xp: Any = None) -> tuple[Array, Array, tuple]:
    r"""One LSTM step; see :func:`lstm_forward` for the equations.

    Parameters
    ----------
    Xt : array of shape (n_ex, n_in)
    A_prev, C_prev : arrays of shape (n_ex, n_out)
        The previous hidden and cell states.
    W, b : arrays of shapes (n_out + n_in, 4 n_out) and (4 n_out,)
        The packed parameters (:func:`lstm_pack`).
    act_fn, gate_fn : Activation

    Returns
    -------
    A, C : arrays of shape (n_ex, n_out)
        The new hidden and cell states.
    cache : tuple
        What :func:`lstm_step_backward` needs.
    """
    xp = namespace_of(Xt) if xp is None else xp
    n = W.shape[1] // 4
    Z = xp.concat([A_prev, Xt], axis=1)
    pre = xp.matmul(Z, W) + b
    S, Cc, C, TC, A = _lstm_gates(pre, C_prev, n, _act_forward(act_fn, xp), _act_forward(gate_fn, xp))
    return A, C, (Z, W, pre, S, Cc, C, TC, C_prev, act_fn, gate_fn)


@replaceable
def lstm_step_backward(dA: Array, dC: Array | None, cache: tuple,
                       xp: Any = None) -> tuple[Array, Array, Array, Array, Array]:
    r"""Gradients of one LSTM step.

    Parameters
    ----------
    dA : array of shape (n_ex, n_out)
        The gradient wrt. the step's hidden state (from the output and from the next step).
    dC : array of shape (n_ex, n_out) or None
        The gradient wrt. the step's cell state coming from the next step (None: zero).
    cache : tuple
        From :func:`lstm_step_forward`.

    Returns
    -------
    dXt, dA_prev, dC_prev, dW, db
    """
    xp = namespace_of(dA) if xp is None else xp
    Z, W, pre, S, Cc, C, TC, C_prev, act_fn, gate_fn = cache
    n = W.shape[1] // 4
    dP_gates, dP_cand, dC_prev = _lstm_gates_backward(dA, dC, pre, S, Cc, C, TC, C_prev, n,
                                                      _act_backward(act_fn), _act_backward(gate_fn), xp)
    dP = xp.concat([dP_gates, dP_cand], axis=1)
    dZ = xp.matmul(dP, xp.matrix_transpose(W))
    dW = xp.matmul(xp.matrix_transpose(Z), dP)
    return dZ[:, n:], dZ[:, :n], dC_prev, dW, xp.sum(dP, axis=0)


@replaceable
def lstm_forward(X: Array, W: Array, b: Array, act_fn: Any, gate_fn: Any, A0: Array | None = None,
                 C0: Array | None = None, workspace: dict | None = None,
                 xp: Any = None) -> tuple[Array, tuple]:
    r"""An LSTM over a whole sequence.

    With :math:`Z_t = [A_{t-1}, X_t]`, :math:`\sigma` the gate function and :math:`g` the activation:

    .. math::

        G^f_t &= \sigma(Z_t W_f + b_f), \quad G^u_t = \sigma(Z_t W_u + b_u), \quad
        G^o_t = \sigma(Z_t W_o + b_o), \quad \tilde C_t = g(Z_t W_c + b_c) \\
        C_t &= G^f_t \odot C_{t-1} + G^u_t \odot \tilde C_t, \qquad A_t = G^o_t \odot g(C_t)

    All four pre-activations of a step come from one product of :math:`Z_t` with the packed ``W``.

    Parameters
    ----------
    X : array of shape (n_ex, n_in, n_t)
    W, b : arrays of shapes (n_out + n_in, 4 n_out) and (4 n_out,)
        The packed parameters (:func:`lstm_pack`).
    act_fn, gate_fn : Activation
    A0, C0 : arrays of shape (n_ex, n_out), optional
        The initial hidden and cell states; default zeros.
    workspace : dict, optional
        Buffers kept from an earlier call, as for :func:`rnn_forward`.

    Returns
    -------
    Y : array of shape (n_ex, n_out, n_t)
        The hidden state at every timestep (a fresh array).
    cache : tuple
        What :func:`lstm_backward` needs.
    """
    xp = namespace_of(X) if xp is None else xp
    n_ex, n_in, n_t = X.shape
    n = W.shape[1] // 4
    ws = {} if workspace is None else workspace
    Z = buffer(ws, "Z", (n_t + 1, n_ex, n + n_in), X, xp)
    if _standard_lstm(act_fn, gate_fn):
        return _lstm_forward_standard(X, W, b, A0, C0, Z, n, ws, xp), (W, act_fn, gate_fn, ws)
    gates = buffer(ws, "S", (n_t, n_ex, 3 * n), X, xp)
    cands = buffer(ws, "Cc", (n_t, n_ex, n), X, xp)
    tanh_cells = buffer(ws, "TC", (n_t, n_ex, n), X, xp)
    cells = buffer(ws, "C", (n_t + 1, n_ex, n), X, xp)
    generic = not (_is_fast(act_fn) and _is_fast(gate_fn))
    pres = buffer(ws, "P", (n_t, n_ex, 4 * n), X, xp) if generic else None
    Z[:n_t, :, n:] = xp.permute_dims(X, (2, 0, 1))
    Z[0, :, :n] = 0.0 if A0 is None else A0
    cells[0, ...] = 0.0 if C0 is None else C0
    Y = xp.empty((n_ex, n, n_t), dtype=X.dtype, device=X.device)
    act, gate = _act_forward(act_fn, xp), _act_forward(gate_fn, xp)
    matmul = xp.matmul
    C = cells[0, ...]
    for t in range(n_t):
        pre = matmul(Z[t, ...], W)
        pre += b
        S, Cc, C, TC, A = _lstm_gates(pre, C, n, act, gate)
        if pres is not None:
            pres[t, ...] = pre
        gates[t, ...] = S
        cands[t, ...] = Cc
        tanh_cells[t, ...] = TC
        cells[t + 1, ...] = C
        Z[t + 1, :, :n] = A
        Y[:, :, t] = A
    return Y, (W, act_fn, gate_fn, ws)


@replaceable
def lstm_backward(dY: Array, cache: tuple, dA_last: Array | None = None, dC_last: Array | None = None,
                  xp: Any = None) -> tuple[Array, Array, Array, Array, Array]:
    r"""Backpropagation through time for :func:`lstm_forward`.

    Going backwards in time, with :math:`dA_t = dY_t + dP_{t+1} W_a^\top` (:math:`W_a`: the first
    ``n_out`` rows of ``W``) and :math:`dC_t` carried from step :math:`t + 1`:

    .. math::

        dC_t &\mathrel{+}= dA_t \odot G^o_t \odot g'(C_t), \quad
        dG^o_t = dA_t \odot g(C_t), \quad dG^f_t = dC_t \odot C_{t-1}, \quad
        dG^u_t = dC_t \odot \tilde C_t, \quad d\tilde C_t = dC_t \odot G^u_t, \\
        dC_{t-1} &= dC_t \odot G^f_t,

    each gate gradient is taken through its activation to give the packed :math:`dP_t`; then
    :math:`dW = \sum_t Z_t^\top dP_t`, :math:`db = \sum_t \sum_{\text{examples}} dP_t` and
    :math:`dX_t = dP_t W_x^\top`, each as one matrix product over all timesteps.

    Parameters
    ----------
    dY : array of shape (n_ex, n_out, n_t)
    cache : tuple
        From :func:`lstm_forward`.
    dA_last, dC_last : arrays of shape (n_ex, n_out), optional
        Extra gradients wrt. the last hidden and cell states.

    Returns
    -------
    dX : array of shape (n_ex, n_in, n_t)
    dW : array of shape (n_out + n_in, 4 n_out)
    db : array of shape (4 n_out,)
    dA0, dC0 : arrays of shape (n_ex, n_out)
        The gradients wrt. the initial hidden and cell states.
    """
    xp = namespace_of(dY) if xp is None else xp
    W, act_fn, gate_fn, ws = cache
    if _standard_lstm(act_fn, gate_fn):
        return _lstm_backward_standard(dY, W, ws, dA_last, dC_last, xp)
    n_ex, n, n_t = dY.shape
    Z, gates, cands, tanh_cells, cells = ws["Z"], ws["S"], ws["Cc"], ws["TC"], ws["C"]
    pres = ws.get("P") if (not (_is_fast(act_fn) and _is_fast(gate_fn))) else None
    dP = buffer(ws, "dP", (n_t, n_ex, 4 * n), dY, xp)
    dYt = xp.permute_dims(dY, (2, 0, 1))
    WaT = _transposed(W[:n, :], xp)
    act_grad, gate_grad = _act_backward(act_fn), _act_backward(gate_fn)
    matmul = xp.matmul
    dA_carry, dC = dA_last, dC_last
    for t in range(n_t - 1, -1, -1):
        dA = dYt[t, ...] if dA_carry is None else dYt[t, ...] + dA_carry
        dP_gates, dP_cand, dC = _lstm_gates_backward(
            dA, dC, None if pres is None else pres[t, ...], gates[t, ...], cands[t, ...],
            cells[t + 1, ...], tanh_cells[t, ...], cells[t, ...], n, act_grad, gate_grad, xp)
        dP[t, :, :3 * n] = dP_gates
        dP[t, :, 3 * n:] = dP_cand
        dA_carry = matmul(dP[t, ...], WaT)
    return (*_sequence_weight_grads(Z, dP, W, n, xp), dA_carry, dC)


# --------------------------------------------------------------------------- LSTM, tanh and sigmoid
def _lstm_forward_standard(X: Array, W: Array, b: Array, A0: Array | None, C0: Array | None,
                           Z: Array, n: int, ws: dict, xp: Any) -> Array:
    r""":func:`lstm_forward` for a tanh activation and sigmoid gates, in thirteen kernels a step.

    The sigmoid gates are :math:`\sigma(p) = (1 + \tanh(p / 2)) / 2`; the halving is folded into a
    copy of the weight and bias made once per sequence (exact: a power of two), so that one ``tanh``
    activates all four gate blocks of a step. Each step keeps that ``tanh`` (``ws["T"]``) and the
    cell state (``ws["C"]``); :func:`_lstm_backward_standard` derives everything else from them.
    """
    n_ex, _, n_t = X.shape
    T = buffer(ws, "T", (n_t, n_ex, 4 * n), X, xp)
    cells = buffer(ws, "C", (n_t + 1, n_ex, n), X, xp)
    Z[:n_t, :, n:] = xp.permute_dims(X, (2, 0, 1))
    Z[0, :, :n] = 0.0 if A0 is None else A0
    cells[0, ...] = 0.0 if C0 is None else C0
    W_half = xp.concat([W[:, :3 * n] * 0.5, W[:, 3 * n:]], axis=1)
    b_half = xp.concat([b[:3 * n] * 0.5, b[3 * n:]], axis=0)
    matmul, tanh = xp.matmul, xp.tanh
    C = cells[0, ...]
    for t in range(n_t):
        P = matmul(Z[t, ...], W_half)
        P += b_half
        Tt = tanh(P)
        T[t, ...] = Tt
        C, A = lstm_cell_update(Tt, C, xp=xp)
        cells[t + 1, ...] = C
        Z[t + 1, :, :n] = A
    return _hidden_states(Z, n, xp)


@replaceable
def lstm_cell_update(T: Array, C_prev: Array, xp: Any = None) -> tuple[Array, Array]:
    r"""The new cell and hidden states of an LSTM step from its activated gate blocks.

    .. math::

        G^k = \tfrac12 (1 + T^k) \ (k = f, u, o), \qquad C = G^f \odot C_{t-1} + G^u \odot T^c,
        \qquad A = G^o \odot \tanh C

    Parameters
    ----------
    T : array of shape (n_ex, 4 n_out)
        :math:`[\tanh(P^f / 2), \tanh(P^u / 2), \tanh(P^o / 2), \tanh P^c]`: the sigmoid gates
        as :math:`\sigma(p) = (1 + \tanh(p / 2)) / 2` and the candidate, in :data:`LSTM_GATES`
        order.
    C_prev : array of shape (n_ex, n_out)

    Returns
    -------
    C, A : arrays of shape (n_ex, n_out)
        Fresh arrays. Seven elementwise kernels here; one on CuPy (a fused kernel).
    """
    xp = namespace_of(T) if xp is None else xp
    n = T.shape[1] // 4
    S = T[:, :3 * n] * 0.5
    S += 0.5
    C = S[:, :n] * C_prev
    C_new = S[:, n:2 * n] * T[:, 3 * n:]
    C += C_new
    return C, S[:, 2 * n:] * xp.tanh(C)


def _lstm_backward_standard(dY: Array, W: Array, ws: dict, dA_last: Array | None,
                            dC_last: Array | None, xp: Any) -> tuple[Array, ...]:
    r""":func:`lstm_backward` after :func:`_lstm_forward_standard`, in eight kernels a step.

    Every factor that does not depend on the incoming gradients is computed for a chunk of
    timesteps at once (the whole sequence within the backend's chunk budget on a GPU; a few steps
    that stay in cache on a CPU), a gate block at a time: with :math:`s' = s(1 - s)` for each gate,

    .. math::

        K^f_t = C_{t-1} G^{f\prime}_t, \quad K^u_t = \tilde C_t G^{u\prime}_t, \quad
        K^o_t = \tanh(C_t) G^{o\prime}_t, \quad K^c_t = G^u_t (1 - \tilde C_t^2), \quad
        K^C_t = G^o_t (1 - \tanh^2 C_t),

    (written over the kept ``tanh`` values, block by block), so that a step is
    :math:`dC_t = dC_{t+1}' + dA_t K^C_t`, :math:`dP_t = [dC_t, dC_t, dA_t, dC_t] \odot
    [K^f_t, K^u_t, K^o_t, K^c_t]`, :math:`dA_{t-1} = dP_t W_a^\top` and
    :math:`dC_{t-1}' = dC_t \odot G^f_t`.
    """
    n_ex, n, n_t = dY.shape
    K, cells = ws["T"], ws["C"]  # K: the kept tanh, overwritten block by block
    K_C = buffer(ws, "KC", (n_t, n_ex, n), dY, xp)
    forget = buffer(ws, "F", (n_t, n_ex, n), dY, xp)
    dP = buffer(ws, "dP", (n_t, n_ex, 4 * n), dY, xp)
    dYt = xp.permute_dims(dY, (2, 0, 1))
    WaT = _transposed(W[:n, :], xp)
    matmul, stack, reshape = xp.matmul, xp.stack, xp.reshape
    # The factors of a chunk of timesteps are made just before the steps use them, while they
    # are still in cache on a CPU; a GPU's budget takes the whole sequence in one chunk.
    budget = chunk_bytes(dY)
    step_bytes = max(1, 4 * n_ex * n * xp.finfo(dY.dtype).bits)
    chunk = n_t if budget is None else max(1, min(n_t, budget // step_bytes))
    dA_carry, dC = dA_last, dC_last
    hi = n_t
    while hi > 0:
        lo = max(0, hi - chunk)
        _lstm_factors(K, cells, K_C, forget, lo, hi, n, xp)
        for t in range(hi - 1, lo - 1, -1):
            dA = dYt[t, ...] if dA_carry is None else dYt[t, ...] + dA_carry
            dCt = dA * K_C[t, ...]
            if dC is not None:
                dCt += dC
            dP[t, ...] = reshape(stack([dCt, dCt, dA, dCt], axis=1), (n_ex, 4 * n)) * K[t, ...]
            dA_carry = matmul(dP[t, ...], WaT)
            dC = dCt * forget[t, ...]
        hi = lo
    return (*_sequence_weight_grads(ws["Z"], dP, W, n, xp), dA_carry, dC)


def _lstm_factors(K: Array, cells: Array, K_C: Array, forget: Array, lo: int, hi: int, n: int,
                  xp: Any) -> None:
    """Timesteps ``lo:hi`` of the factors of :func:`_lstm_backward_standard`: ``K`` (holding the
    kept tanh of the gates) becomes :math:`[K^f, K^u, K^o, K^c]`, ``K_C`` gets :math:`K^C` and
    ``forget`` the forget gate."""
    f, u, o, c = (slice(k * n, (k + 1) * n) for k in range(4))
    steps = slice(lo, hi)

    gate = K[steps, :, f] * 0.5
    gate += 0.5
    forget[steps, ...] = gate
    slope = 1.0 - gate
    slope *= gate
    slope *= cells[lo:hi, ...]
    K[steps, :, f] = slope

    gate = K[steps, :, u] * 0.5
    gate += 0.5
    slope = 1.0 - gate
    slope *= gate
    slope *= K[steps, :, c]
    K[steps, :, u] = slope
    slope = K[steps, :, c] * K[steps, :, c]
    slope = 1.0 - slope
    slope *= gate
    K[steps, :, c] = slope

    gate = K[steps, :, o] * 0.5
    gate += 0.5
    tanh_cells = xp.tanh(cells[lo + 1:hi + 1, ...])
    slope = 1.0 - gate
    slope *= gate
    slope *= tanh_cells
    K[steps, :, o] = slope
    slope = tanh_cells * tanh_cells
    slope = 1.0 - slope
    slope *= gate
    K_C[steps, ...] = slope
