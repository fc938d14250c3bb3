r"""PyTorch's own recurrent kernels and fused optimizer steps, for arrays of the torch backend.

Registered on :class:`~anyml.backend._torch.TorchBackend` under the names of the pure functions they
replace (see "Native fast paths" in :mod:`anyml.backend`):

* ``lstm_forward`` / ``lstm_backward`` (:mod:`anyml.functional.recurrent`): PyTorch's fused LSTM
  (``torch._VF.lstm``, what ``nn.LSTM`` runs), differentiated by autograd;
* ``adam_step``, ``rmsprop_step``, ``adagrad_step`` and ``sgd_step`` (:mod:`anyml.optimizers`): the
  same arithmetic with PyTorch's fused pointwise operations (``addcmul``, ``addcdiv``), fewer
  passes over memory and no temporaries the pure path's operators make.

* ``lstm_step_forward`` / ``lstm_step_backward`` and ``rnn_step_forward`` / ``rnn_step_backward``:
  a step written with ``addmm``, ``addcmul`` and PyTorch's fused ``tanh_backward`` /
  ``sigmoid_backward`` (no autograd: driving ``torch.lstm_cell`` through autograd measured slower
  than the pure path at one step, for its per-call graph and weight reordering).

The Elman RNN sequence keeps the pure path: ``torch._VF.rnn_tanh`` measured no faster on the CPU.

The LSTM kernel takes only the standard activations, a tanh activation and sigmoid gates
(recognised by the ``output_derivative`` tag of :mod:`anyml.functional.activations`); anything else
returns ``NotImplemented`` and takes the pure path. PyTorch's gate order is (input, forget, cell,
output) where anyml packs (forget, update, output, candidate); the weight is reordered inside the
autograd graph, so the gradients come back in anyml's layout. A forward pass records the graph in a
:class:`TorchRecurrentGraph`, and only a backward given such a cache runs natively. Results equal the
pure path's up to rounding; ``tests/backend/test_torch_fast_recurrent.py`` checks each.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from anyml.backend._base import Array
from anyml.backend._torch import TorchBackend

__all__ = ["TorchLSTMStep", "TorchRNNStep", "TorchRecurrentGraph"]

register = TorchBackend.register_fast_path


class TorchRecurrentGraph(NamedTuple):
    """The cache of a native recurrent forward: the graph's outputs and the leaves (detached inputs
    marked as requiring gradients) in the order the pure backward returns their gradients."""

    outputs: tuple[Any, ...]
    leaves: tuple[Any, ...]


def _torch() -> Any:
    import torch

    return torch


def _kind(act: Any) -> str | None:
    kind = vars(type(act)).get("output_derivative")
    return kind if isinstance(kind, str) else None


def _usable(*arrays: Any) -> bool:
    torch = _torch()
    if torch.is_inference_mode_enabled():
        return False
    return all(a is None or (a.is_floating_point() and not a.is_inference() and a.numel() > 0)
               for a in arrays)


def _floats(*arrays: Any) -> bool:
    return all(a is None or a.is_floating_point() for a in arrays)


def _leaves(*arrays: Any) -> tuple[Any, ...]:
    return tuple(a.detach().requires_grad_(True) for a in arrays)


def _torch_lstm_weights(W: Any, b: Any, n: int) -> tuple[Any, Any, Any]:
    """``(w_ih, w_hh, b_ih)`` in PyTorch's layout from anyml's packed ``W`` and ``b``."""
    torch = _torch()
    order = [W[:, n:2 * n], W[:, :n], W[:, 3 * n:], W[:, 2 * n:3 * n]]
    Wt = torch.cat(order, dim=1).t()
    bias = torch.cat([b[n:2 * n], b[:n], b[3 * n:], b[2 * n:3 * n]])
    return Wt[:, n:].contiguous(), Wt[:, :n].contiguous(), bias


def _state(x: Any, like: Any, n: int) -> Any:
    if x is not None:
        return x
    torch = _torch()
    return torch.zeros((like.shape[0], n), dtype=like.dtype, device=like.device)


def _grads(graph: TorchRecurrentGraph, douts: tuple[Any, ...]) -> tuple[Any, ...]:
    """The gradients wrt. every leaf, for the upstream gradients of the outputs (``None``: zero)."""
    torch = _torch()
    pairs = [(o, d) for o, d in zip(graph.outputs, douts, strict=True) if d is not None]
    with torch.enable_grad():
        grads = torch.autograd.grad([o for o, _ in pairs], graph.leaves, [d for _, d in pairs],
                                    retain_graph=True, allow_unused=True)
    return tuple(torch.zeros_like(leaf) if g is None else g
                 for g, leaf in zip(grads, graph.leaves, strict=True))


# ------------------------------------------------------------------------------ sequences
@register("lstm_forward")
def lstm_forward(X: Array, W: Array, b: Array, act_fn: Any, gate_fn: Any, A0: Array | None = None,
                 C0: Array | None = None, workspace: dict | None = None, xp: Any = None) -> Any:
    """``torch._VF.lstm`` (see :func:`anyml.functional.recurrent.lstm_forward`)."""
    if _kind(act_fn) != "tanh" or _kind(gate_fn) != "sigmoid" or not _usable(X, W, b, A0, C0):
        return NotImplemented
    torch = _torch()
    n = int(W.shape[1]) // 4
    leaves = _leaves(X, W, b, _state(A0, X, n), _state(C0, X, n))
    x, w, bias, h0, c0 = leaves
    with torch.enable_grad():
        w_ih, w_hh, b_ih = _torch_lstm_weights(w, bias, n)
        out, h_n, c_n = torch._VF.lstm(x.permute(2, 0, 1), (h0[None], c0[None]),
                                       [w_ih, w_hh, b_ih, torch.zeros_like(b_ih)], True, 1, 0.0,
                                       True, False, False)
    Y = out.detach().permute(1, 2, 0).contiguous()
    return Y, TorchRecurrentGraph((out, h_n, c_n), leaves)


@register("lstm_backward")
def lstm_backward(dY: Array, cache: Any, dA_last: Array | None = None,
                  dC_last: Array | None = None, xp: Any = None) -> Any:
    """The gradients of :func:`lstm_forward` by autograd."""
    if not isinstance(cache, TorchRecurrentGraph):
        return NotImplemented
    dX, dW, db, dA0, dC0 = _grads(cache, (dY.permute(2, 0, 1),
                                          None if dA_last is None else dA_last[None],
                                          None if dC_last is None else dC_last[None]))
    return dX, dW, db, dA0, dC0


# ------------------------------------------------------------------------------ single steps
class TorchLSTMStep(NamedTuple):
    """The cache of a native LSTM step: what its hand-written backward needs."""

    Z: Any
    W: Any
    S: Any
    Cc: Any
    C_prev: Any
    TC: Any


class TorchRNNStep(NamedTuple):
    """The cache of a native RNN step."""

    Z: Any
    W: Any
    A: Any


@register("lstm_step_forward")
def lstm_step_forward(Xt: Array, A_prev: Array, C_prev: Array, W: Array, b: Array, act_fn: Any,
                      gate_fn: Any, xp: Any = None) -> Any:
    """One LSTM step with ``addmm``, ``sigmoid``, ``tanh`` and ``addcmul`` (see
    :func:`anyml.functional.recurrent.lstm_step_forward`)."""
    if _kind(act_fn) != "tanh" or _kind(gate_fn) != "sigmoid" or not _floats(Xt, A_prev, C_prev,
                                                                                W, b):
        return NotImplemented
    torch = _torch()
    n = int(W.shape[1]) // 4
    Z = torch.cat([A_prev, Xt], dim=1)
    P = torch.addmm(b, Z, W)
    S = torch.sigmoid(P[:, :3 * n])
    Cc = torch.tanh(P[:, 3 * n:])
    C = torch.addcmul(S[:, :n] * C_prev, S[:, n:2 * n], Cc)
    TC = torch.tanh(C)
    return S[:, 2 * n:] * TC, C, TorchLSTMStep(Z, W, S, Cc, C_prev, TC)


@register("lstm_step_backward")
def lstm_step_backward(dA: Array, dC: Array | None, cache: Any, xp: Any = None) -> Any:
    """The gradients of :func:`lstm_step_forward` with PyTorch's fused ``tanh_backward`` and
    ``sigmoid_backward``: ``dXt, dA_prev, dC_prev, dW, db``."""
    if not isinstance(cache, TorchLSTMStep):
        return NotImplemented
    torch = _torch()
    aten = torch.ops.aten
    Z, W, S, Cc, C_prev, TC = cache
    n = int(W.shape[1]) // 4
    dCt = aten.tanh_backward(dA * S[:, 2 * n:], TC)
    if dC is not None:
        dCt = dCt + dC
    dS = torch.cat([dCt * C_prev, dCt * Cc, dA * TC], dim=1)
    dP = torch.cat([aten.sigmoid_backward(dS, S), aten.tanh_backward(dCt * S[:, n:2 * n], Cc)],
                   dim=1)
    dZ = dP @ W.t()
    return dZ[:, n:], dZ[:, :n], dCt * S[:, :n], Z.t() @ dP, dP.sum(dim=0)


@register("rnn_step_forward")
def rnn_step_forward(Xt: Array, A_prev: Array, W: Array, b: Array, act_fn: Any,
                     xp: Any = None) -> Any:
    """One Elman step with ``addmm`` and ``tanh`` (see
    :func:`anyml.functional.recurrent.rnn_step_forward`)."""
    if _kind(act_fn) != "tanh" or not _floats(Xt, A_prev, W, b):
        return NotImplemented
    torch = _torch()
    Z = torch.cat([A_prev, Xt], dim=1)
    A = torch.tanh(torch.addmm(b, Z, W))
    return A, TorchRNNStep(Z, W, A)


@register("rnn_step_backward")
def rnn_step_backward(dA: Array, cache: Any, xp: Any = None) -> Any:
    """The gradients of :func:`rnn_step_forward`: ``dXt, dA_prev, dW, db``."""
    if not isinstance(cache, TorchRNNStep):
        return NotImplemented
    torch = _torch()
    Z, W, A = cache
    n = int(W.shape[1])
    dP = torch.ops.aten.tanh_backward(dA, A)
    dZ = dP @ W.t()
    return dZ[:, n:], dZ[:, :n], Z.t() @ dP, dP.sum(dim=0)


# ------------------------------------------------------------------------------ optimizer steps
@register("sgd_step")
def sgd_step(param: Array, grad: Array, update: Array | None, lr: float, momentum: float) -> Any:
    """:func:`anyml.optimizers.sgd_step` with ``torch.add(..., alpha=)`` (one pass each)."""
    if not _floats(param, grad, update):
        return NotImplemented
    torch = _torch()
    if update is None:
        return torch.add(param, grad, alpha=-lr), None
    new_update = torch.add(update * momentum, grad, alpha=lr)
    return param - new_update, new_update


@register("adagrad_step")
def adagrad_step(param: Array, grad: Array, sum_sq: Array, lr: float, eps: float) -> Any:
    """:func:`anyml.optimizers.adagrad_step` with ``addcmul`` / ``addcdiv``."""
    if not _floats(param, grad, sum_sq):
        return NotImplemented
    torch = _torch()
    new_sum_sq = torch.addcmul(sum_sq, grad, grad)
    denom = new_sum_sq.sqrt().add_(eps)
    return torch.addcdiv(param, grad, denom, value=-lr), new_sum_sq


@register("rmsprop_step")
def rmsprop_step(param: Array, grad: Array, mean_sq: Array, lr: float, decay: float,
                 eps: float) -> Any:
    """:func:`anyml.optimizers.rmsprop_step` with ``addcmul`` / ``addcdiv``."""
    if not _floats(param, grad, mean_sq):
        return NotImplemented
    torch = _torch()
    new_mean_sq = torch.addcmul(mean_sq * decay, grad, grad, value=1.0 - decay)
    denom = new_mean_sq.sqrt().add_(eps)
    return torch.addcdiv(param, grad, denom, value=-lr), new_mean_sq


@register("adam_step")
def adam_step(param: Array, grad: Array, mean: Array, var: Array, lr: float, decay1: float,
              decay2: float, eps: float, t: int, weight_decay: float = 0.0) -> Any:
    """:func:`anyml.optimizers.adam_step` with ``lerp``, ``addcmul`` and ``addcdiv`` (the bias
    corrections folded into host scalars, as in the pure path)."""
    if not _floats(param, grad, mean, var):
        return NotImplemented
    torch = _torch()
    new_mean = torch.lerp(mean, grad, 1.0 - decay1)
    new_var = torch.addcmul(var * decay2, grad, grad, value=1.0 - decay2)
    root_bc2 = math.sqrt(1.0 - decay2**t)
    denom = new_var.sqrt().add_(eps * root_bc2)
    start = param * (1.0 - lr * weight_decay) if weight_decay else param
    step_size = lr * root_bc2 / (1.0 - decay1**t)
    return torch.addcdiv(start, new_mean, denom, value=-step_size), new_mean, new_var
