r"""Recurrent layers: ``RNNCell``, ``RNN``, ``LSTMCell`` and ``LSTM``.

Sequences have shape ``(n_ex, n_in, n_t)`` (examples, features, timesteps) and the hidden states come
back as ``(n_ex, n_out, n_t)``; a cell takes and returns one timestep, ``(n_ex, n_in) -> (n_ex, n_out)``.

State
-----
* ``RNN`` and ``LSTM`` start every :meth:`~RNN.forward` from zero hidden (and cell) states; each call is
  a sequence of its own, retained for one :meth:`~RNN.backward` (backpropagation through all its
  timesteps), so several minibatches train with plain forward / backward / update loops.
* ``RNNCell`` and ``LSTMCell`` carry their hidden (and cell) state from one ``forward`` to the next
  until :meth:`~RNNCell.reset_state`, which :meth:`~RNNCell.flush_gradients` and therefore
  :meth:`~RNNCell.update` call: a sequence runs from one reset to the next. Each ``backward`` goes back
  one retained timestep, newest first, and carries the gradient wrt. the earlier state to the next
  ``backward`` call. Resetting drops the state, the carried gradient and the retained steps together.

The cells live in :mod:`anyml.layers._recurrent_cells` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

from anyml.backend import Array, Backend
from anyml.functional.recurrent import lstm_backward, lstm_forward, rnn_backward, rnn_forward
from anyml.layers._recurrent_base import _Recurrent
from anyml.layers._recurrent_cells import LSTMCell, RNNCell
from anyml.layers._workspace import PooledWorkspaces

__all__ = ["LSTM", "RNN", "LSTMCell", "RNNCell"]



class _Sequence(_Recurrent, PooledWorkspaces):
    """``forward(X)`` over all timesteps from zero states; ``backward(dLdA)`` through all of them.

    The per-step values of a forward pass live in a workspace borrowed from the layer's pool
    (:mod:`anyml.layers._workspace`) until its backward pass is done.
    """

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Run the layer over every timestep of ``X``, of shape ``(n_ex, n_in, n_t)``.

        Returns
        -------
        Y : array of shape (n_ex, n_out, n_t)
            The hidden state at every timestep.
        """
        self._prepare(X, 3, self._seq_shape)
        if X.shape[2] < 1:
            msg = f"{type(self).__name__}: expected X with at least one timestep, got {tuple(X.shape)}"
            raise ValueError(msg)
        W, b = self._pack()
        ws = self._workspaces.take()
        if self._lstm:
            Y, cache = lstm_forward(X, W, b, self.act_fn, self.gate_fn, workspace=ws, xp=self.xp)
        else:
            Y, cache = rnn_forward(X, W, b, self.act_fn, workspace=ws, xp=self.xp)
        if retain_derived:
            self._push(True, X=X, A=Y, _seq=cache, _ws=ws, _shape=tuple(Y.shape))
        else:
            self._workspaces.give_back(ws)
        return Y

    def backward(self, dLdA: Array, retain_grads: bool = True) -> Array:
        """Backpropagate through every timestep of the newest retained forward pass.

        Parameters
        ----------
        dLdA : array of shape (n_ex, n_out, n_t)
            The gradient of the loss wrt. the hidden state at every timestep.
        retain_grads : bool
            Whether to add the parameter gradients into :attr:`gradients`.

        Returns
        -------
        dLdX : array of shape (n_ex, n_in, n_t)
        """
        cache = self._pop_checked(dLdA, "dLdA")
        if self._lstm:
            dX, dW, db, _, _ = lstm_backward(dLdA, cache["_seq"], xp=self.xp)
        else:
            dX, dW, db, _ = rnn_backward(dLdA, cache["_seq"], xp=self.xp)
        self._accumulate(retain_grads, **self._unpack(dW, db))
        self._workspaces.give_back(cache["_ws"])
        return dX


class RNN(_Sequence):
    r"""An Elman RNN layer run over whole sequences.

    Parameters
    ----------
    n_out : int
        The size of the hidden state (the output at each timestep).
    act_fn : str, Activation or None
        The activation :math:`f` of the hidden state. Default ``"Tanh"``.
    init : str or Initializer
        How ``Wax`` and ``Waa`` are drawn (the biases start at zero). Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    For :math:`t = 1 \dots n_t`, from :math:`A_0 = 0`:

    .. math:: Z_t = X_t W_{ax} + b_x + A_{t-1} W_{aa} + b_a, \qquad A_t = f(Z_t)

    Backward, with :math:`dA_t = \partial L/\partial A_t + dZ_{t+1} W_{aa}^\top` and
    :math:`dZ_t = dA_t \odot f'(Z_t)`:

    .. math::

        \frac{\partial L}{\partial X_t} = dZ_t W_{ax}^\top, \quad
        \frac{\partial L}{\partial W_{ax}} = \sum_t X_t^\top dZ_t, \quad
        \frac{\partial L}{\partial W_{aa}} = \sum_t A_{t-1}^\top dZ_t, \quad
        \frac{\partial L}{\partial b_x} = \frac{\partial L}{\partial b_a} = \sum_{t, i} dZ_{t,i}

    ``Wax`` is ``(n_in, n_out)``, ``Waa`` ``(n_out, n_out)``, ``bx`` and ``ba`` ``(n_out,)`` (numpy-ml
    keeps them as ``(n_out, 1)``, which ``set_params`` loads). Each
    ``forward`` stacks them into one ``(n_out + n_in, n_out)`` matrix acting on
    :math:`[A_{t-1}, X_t]`, so a step costs one matrix product, and the backward pass forms the
    weight and input gradients with one product each over all timesteps.
    Every ``forward`` starts from zero states. Unlike numpy-ml's, ``backward`` accepts
    ``retain_grads`` and ``forward`` ``retain_derived``, and training over several minibatches needs
    nothing between ``update`` and the next ``forward``.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.recurrent import RNN
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> rnn = RNN(8, backend=be)
    >>> Y = rnn.forward(be.rng.normal((4, 3, 5)))
    >>> Y.shape, rnn.backward(Y).shape
    ((4, 8, 5), (4, 3, 5))
    """

    _trainable_names = ("Wax", "Waa", "bx", "ba")

    def __init__(self, n_out: int, act_fn: Any = "Tanh", init: Any = "glorot_uniform",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(n_out, act_fn, init, optimizer, backend)


class LSTM(_Sequence):
    r"""A long short-term memory layer run over whole sequences.

    Parameters
    ----------
    n_out : int
        The size of the hidden and cell states.
    act_fn : str, Activation or None
        The activation :math:`g` of the candidate and of the cell state. Default ``"Tanh"``.
    gate_fn : str, Activation or None
        The activation :math:`\sigma` of the forget, update and output gates. Default ``"Sigmoid"``.
    init : str or Initializer
        How the gate weights are drawn (the biases start at zero). Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    With :math:`Z_t = [A_{t-1}, X_t]` (previous hidden state first) and zero initial states:

    .. math::

        G^f_t &= \sigma(Z_t W_f + b_f), \quad G^u_t = \sigma(Z_t W_u + b_u), \quad
        G^o_t = \sigma(Z_t W_o + b_o), \quad \tilde C_t = g(Z_t W_c + b_c), \\
        C_t &= G^f_t \odot C_{t-1} + G^u_t \odot \tilde C_t, \qquad A_t = G^o_t \odot g(C_t).

    Backward, going back in time with :math:`dA_t = \partial L/\partial A_t + (\text{from } t+1)`:

    .. math::

        dC_t &= dC_{t+1} \odot G^f_{t+1} + dA_t \odot G^o_t \odot g'(C_t), \\
        dG^o_t &= dA_t \odot g(C_t), \quad dG^f_t = dC_t \odot C_{t-1}, \quad
        dG^u_t = dC_t \odot \tilde C_t, \quad d\tilde C_t = dC_t \odot G^u_t,

    each taken through its activation to the pre-activation :math:`dP^k_t`; then
    :math:`\partial L/\partial W_k = \sum_t Z_t^\top dP^k_t`,
    :math:`\partial L/\partial b_k = \sum_{t,i} dP^k_{t,i}` and :math:`[dA_{t-1}, dX_t] = \sum_k
    dP^k_t W_k^\top`.

    The parameters are kept as numpy-ml has them, ``Wf, Wu, Wc, Wo`` of shape ``(n_out + n_in,
    n_out)``, and ``bf, bu, bc, bo`` of shape ``(n_out,)`` (numpy-ml's ``(1, n_out)`` loads); each
    ``forward`` packs them into one ``(n_out + n_in, 4 n_out)`` matrix, so all four gates of a step
    come from a single matrix product, and each ``backward`` forms the packed weight gradient with
    one product over all timesteps and splits it once. ``Wu`` is what PyTorch calls the input gate.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.recurrent import LSTM
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> lstm = LSTM(8, backend=be)
    >>> Y = lstm.forward(be.rng.normal((4, 3, 5)))
    >>> Y.shape, lstm.parameters["Wf"].shape
    ((4, 8, 5), (11, 8))
    """

    _lstm = True
    _trainable_names = ("Wf", "Wu", "Wc", "Wo", "bf", "bu", "bc", "bo")

    def __init__(self, n_out: int, act_fn: Any = "Tanh", gate_fn: Any = "Sigmoid",
                 init: Any = "glorot_uniform", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(n_out, act_fn, init, optimizer, backend, gate_fn=gate_fn)

