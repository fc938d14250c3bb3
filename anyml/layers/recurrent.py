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
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from anyml.activations import Activation, get_activation
from anyml.backend import Backend
from anyml.functional.recurrent import (
    lstm_backward,
    lstm_forward,
    lstm_pack,
    lstm_step_backward,
    lstm_step_forward,
    lstm_unpack,
    rnn_backward,
    rnn_forward,
    rnn_pack,
    rnn_step_backward,
    rnn_step_forward,
    rnn_unpack,
)
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase

__all__ = ["LSTM", "RNN", "LSTMCell", "RNNCell"]

Array = Any


class _Recurrent(LayerBase):
    """What the four recurrent layers share: hyperparameters, parameter shapes and input checks."""

    _lstm = False
    _seq_shape = "(n_ex, n_in, n_t)"

    def __init__(self, n_out: int, act_fn: Any, init: Any, optimizer: Any,
                 backend: str | Backend | None, gate_fn: Any = None) -> None:
        name = type(self).__name__
        if isinstance(n_out, bool) or not isinstance(n_out, Integral) or n_out < 1:
            msg = f"{name}: n_out must be a positive integer, got {n_out!r}"
            raise ValueError(msg)
        act = _activation(name, "act_fn", act_fn)
        gate = _activation(name, "gate_fn", gate_fn) if self._lstm else None
        try:
            get_initializer(init)
        except (ValueError, TypeError) as exc:
            msg = f"{name}: bad init {init!r}: {exc}"
            raise ValueError(msg) from exc
        super().__init__(optimizer, backend=backend)
        self.n_out: int = int(n_out)
        self.n_in: int | None = None
        self.act_fn: Activation = act
        if gate is not None:
            self.gate_fn: Activation = gate
        self.init: Any = init

    def _config(self) -> dict[str, Any]:
        config = {"init": str(self.init), "n_in": self.n_in, "n_out": self.n_out,
                  "act_fn": str(self.act_fn)}
        if self._lstm:
            config["gate_fn"] = str(self.gate_fn)
        return config

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "gate_fn":
            value = get_activation(value)
        super()._set_hyperparameter(key, value)

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        n_in, n_out = self.n_in, self.n_out
        if self._lstm:
            rows = None if n_in is None else n_out + n_in
            return {**{f"W{g}": (rows, n_out) for g in "fuco"},
                    **{f"b{g}": (n_out,) for g in "fuco"}}
        return {"Wax": (n_in, n_out), "Waa": (n_out, n_out), "bx": (n_out,), "ba": (n_out,)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            return
        if key == "Wax":
            self.n_in = int(shape[0])
        elif self._lstm and key in ("Wf", "Wu", "Wc", "Wo"):
            if shape[0] <= self.n_out or shape[1] != self.n_out:
                msg = (f"{type(self).__name__}.set_params: parameter {key!r} should have shape "
                       f"(n_out + n_in, n_out) with n_out={self.n_out}, got {tuple(shape)}")
                raise ValueError(msg)
            self.n_in = int(shape[0]) - self.n_out

    def _init_params(self, n_in: int) -> None:
        self.n_in = n_in
        draw = get_initializer(self.init, act_fn=self.act_fn)
        rng, n_out = self.backend.host_rng, self.n_out
        if self._lstm:  # drawn in the order Wf, Wu, Wc, Wo
            shapes = {f"W{g}": (n_out + n_in, n_out) for g in "fuco"}
        else:
            shapes = {"Wax": (n_in, n_out), "Waa": (n_out, n_out)}
        for name, shape in shapes.items():
            self._new_param(name, draw(shape, rng))
        for name in self._trainable_names:
            if name.startswith("b"):
                self._new_param(name, self.xp.zeros((n_out,), dtype=self.backend.dtype,
                                                    device=self.backend.device))

    def _prepare(self, X: Array, ndim: int, shape: str, name: str = "X") -> None:
        """Check an input's backend, dtype and rank, then create or check the parameters."""
        self._check_input(X, ndim=ndim, shape=shape, name=name)
        n_in = int(X.shape[1])
        if not self.is_initialized:
            self._init_params(n_in)
        elif n_in != self.n_in:
            want = shape.replace("n_in", str(self.n_in))
            msg = f"{type(self).__name__}: expected {name} of shape {want}, got {tuple(X.shape)}"
            raise ValueError(msg)

    def _pack(self) -> tuple[Array, Array]:
        P, xp = self.parameters, self.xp
        if self._lstm:
            return lstm_pack(P["Wf"], P["Wu"], P["Wc"], P["Wo"], P["bf"], P["bu"], P["bc"], P["bo"],
                             xp=xp)
        return rnn_pack(P["Wax"], P["Waa"], P["bx"], P["ba"], xp=xp)

    def _unpack(self, dW: Array, db: Array) -> dict[str, Array]:
        return lstm_unpack(dW, db) if self._lstm else rnn_unpack(dW, db, self.n_out)

    def _pop_checked(self, grad: Array, name: str) -> dict[str, Any]:
        """Check the upstream gradient against the newest retained pass, then pop that pass."""
        if self._caches:
            shape = tuple(self._caches[-1]["_shape"])
            self._check_input(grad, name=name)
            got = tuple(grad.shape)
            if len(shape) == 3 and len(got) == 3 and got[:2] == shape[:2] and got[2] != shape[2]:
                msg = (f"{type(self).__name__}: expected {name} with {shape[2]} timesteps (those of "
                       f"the forward pass), got {got[2]}")
                raise ValueError(msg)
            self._check_grad(grad, shape, name)
        return self._pop()


def _activation(owner: str, arg: str, spec: Any) -> Activation:
    try:
        return get_activation(spec)
    except (ValueError, TypeError) as exc:
        msg = f"{owner}: bad {arg} {spec!r}: {exc}"
        raise (TypeError if isinstance(exc, TypeError) else ValueError)(msg) from exc


# --------------------------------------------------------------------------- whole sequences
class _Sequence(_Recurrent):
    """``forward(X)`` over all timesteps from zero states; ``backward(dLdA)`` through all of them.

    The per-step values of a forward pass live in a workspace (a dict of arrays) that goes back to a
    small pool once its backward pass is done, so that training loops reuse the same memory.
    """

    _POOL_SIZE = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workspaces: list[dict[str, Array]] = []

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
        ws = self._workspaces.pop() if self._workspaces else {}
        if self._lstm:
            Y, cache = lstm_forward(X, W, b, self.act_fn, self.gate_fn, workspace=ws, xp=self.xp)
        else:
            Y, cache = rnn_forward(X, W, b, self.act_fn, workspace=ws, xp=self.xp)
        if retain_derived:
            self._push(True, X=X, A=Y, _seq=cache, _ws=ws, _shape=tuple(Y.shape))
        else:
            self._release(ws)
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
        self._release(cache["_ws"])
        return dX

    def _release(self, ws: dict[str, Array]) -> None:
        if len(self._workspaces) < self._POOL_SIZE:
            self._workspaces.append(ws)

    def to(self, backend: str | Backend) -> _Sequence:
        """Move the layer to another backend (see :meth:`LayerBase.to`)."""
        super().to(backend)
        self._workspaces.clear()
        return self


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

    ``Wax`` is ``(n_in, n_out)``, ``Waa`` ``(n_out, n_out)``, ``bx`` and ``ba`` ``(n_out,)``. Each
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
    n_out)`` and ``bf, bu, bc, bo`` of shape ``(n_out,)``; each ``forward`` packs them into one
    ``(n_out + n_in, 4 n_out)`` matrix, so all four gates of a step come from a single matrix
    product, and each ``backward`` forms the packed weight gradient with one product over all
    timesteps and splits it once. ``Wu`` is what PyTorch calls the input gate.

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


# --------------------------------------------------------------------------- single steps
class _Cell(_Recurrent):
    """One timestep per ``forward``, the state carried between calls until :meth:`reset_state`."""

    _seq_shape = "(n_ex, n_in)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state: tuple[Array, ...] | None = None
        self._carry: tuple[Array, ...] | None = None
        self._packed: tuple[tuple[Array, ...], Array, Array] | None = None

    @property
    def state(self) -> dict[str, Array]:
        """The current hidden state ``A`` (and cell state ``C`` for an LSTM); empty after a reset."""
        if self._state is None:
            return {}
        return dict(zip(("A", "C")[:len(self._state)], self._state, strict=True))

    def reset_state(self) -> None:
        """Start a new sequence: zero the state and drop the carried gradient and retained steps."""
        self._caches.clear()
        self._state = None
        self._carry = None
        self._packed = None

    def flush_gradients(self) -> None:
        """Zero the gradients and :meth:`reset_state` (so :meth:`update` also ends the sequence)."""
        super().flush_gradients()
        self.reset_state()

    def to(self, backend: str | Backend) -> _Cell:
        """Move the layer to another backend (see :meth:`LayerBase.to`); the state is reset."""
        super().to(backend)
        self.reset_state()
        return self

    def _step_inputs(self, Xt: Array) -> tuple[tuple[Array, ...], Array, Array]:
        """Validate ``Xt`` and return the previous state and the packed parameters."""
        self._prepare(Xt, 2, self._seq_shape, name="Xt")
        n_ex = int(Xt.shape[0])
        if self._state is None:
            zeros = self.xp.zeros((n_ex, self.n_out), dtype=Xt.dtype, device=Xt.device)
            state: tuple[Array, ...] = (zeros, zeros) if self._lstm else (zeros,)
        else:
            state = self._state
            if int(state[0].shape[0]) != n_ex:
                msg = (f"{type(self).__name__}: expected Xt with {state[0].shape[0]} examples (those "
                       f"of the current state), got {tuple(Xt.shape)}; call reset_state() to start "
                       f"a new sequence")
                raise ValueError(msg)
        refs = tuple(self.parameters[k] for k in self._trainable_names)
        cached = self._packed
        if cached is None or any(a is not b for a, b in zip(cached[0], refs, strict=True)):
            cached = (refs, *self._pack())
            self._packed = cached
        return state, cached[1], cached[2]

    def backward(self, dLdAt: Array, retain_grads: bool = True) -> Array:
        """Backpropagate through the newest retained timestep.

        Parameters
        ----------
        dLdAt : array of shape (n_ex, n_out)
            The gradient of the loss wrt. that step's output (the gradient arriving from later steps
            through the state is added by the layer).
        retain_grads : bool
            Whether to add the parameter gradients into :attr:`gradients`.

        Returns
        -------
        dLdXt : array of shape (n_ex, n_in)
        """
        cache = self._pop_checked(dLdAt, "dLdAt")
        carry = self._carry
        dA = dLdAt if carry is None else dLdAt + carry[0]
        if self._lstm:
            dX, dA_prev, dC_prev, dW, db = lstm_step_backward(
                dA, None if carry is None else carry[1], cache["_step"], xp=self.xp)
            new_carry: tuple[Array, ...] = (dA_prev, dC_prev)
        else:
            dX, dA_prev, dW, db = rnn_step_backward(dA, cache["_step"], xp=self.xp)
            new_carry = (dA_prev,)
        self._carry = new_carry if self._caches else None
        self._accumulate(retain_grads, **self._unpack(dW, db))
        return dX


class RNNCell(_Cell):
    r"""One timestep of an Elman RNN; the hidden state is kept between calls.

    Parameters
    ----------
    n_out, act_fn, init, optimizer, backend
        As for :class:`RNN`.

    Notes
    -----
    .. math:: A_t = f(X_t W_{ax} + b_x + A_{t-1} W_{aa} + b_a)

    computed as one matrix product :math:`[A_{t-1}, X_t] \, [W_{aa}; W_{ax}]`. The state starts at
    zero and is kept from call to call until :meth:`reset_state`, :meth:`flush_gradients` or
    :meth:`update`. ``backward(dLdAt)`` goes back through the newest retained step and keeps
    :math:`\partial L/\partial A_{t-1}` for the next ``backward`` call, so after ``n_t`` forwards,
    ``n_t`` backwards (newest first) give the full backpropagation through time; retain every step
    that will be backpropagated (a step run with ``retain_derived=False`` still advances the state
    but cannot be gone back through). numpy-ml clears that
    history in ``flush_gradients`` but not its step counter, so its cells fail on the second minibatch;
    here a reset clears both.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.recurrent import RNNCell
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> cell = RNNCell(8, backend=be)
    >>> X = be.rng.normal((4, 3, 5))
    >>> A = [cell.forward(X[:, :, t]) for t in range(5)]
    >>> dX = [cell.backward(a) for a in reversed(A)]
    >>> A[-1].shape, dX[-1].shape
    ((4, 8), (4, 3))
    """

    _trainable_names = ("Wax", "Waa", "bx", "ba")

    def __init__(self, n_out: int, act_fn: Any = "Tanh", init: Any = "glorot_uniform",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(n_out, act_fn, init, optimizer, backend)

    def forward(self, Xt: Array, retain_derived: bool = True) -> Array:
        """Advance one timestep: ``Xt`` of shape ``(n_ex, n_in)`` -> hidden state ``(n_ex, n_out)``."""
        state, W, b = self._step_inputs(Xt)
        A, cache = rnn_step_forward(Xt, state[0], W, b, self.act_fn, xp=self.xp)
        self._state = (A,)
        self._push(retain_derived, X=Xt, A=A, _step=cache, _shape=tuple(A.shape))
        return A


class LSTMCell(_Cell):
    r"""One timestep of an LSTM; the hidden and cell states are kept between calls.

    Parameters
    ----------
    n_out, act_fn, gate_fn, init, optimizer, backend
        As for :class:`LSTM`.

    Notes
    -----
    The equations are those of :class:`LSTM` for one step, with all four gates from one matrix
    product of :math:`[A_{t-1}, X_t]` with the packed weights (packed once and reused while the
    parameters stay the same). The state lifecycle is that of :class:`RNNCell`.

    ``forward`` returns the hidden state only, like :class:`RNNCell` and like what ``backward``
    differentiates; numpy-ml also returns the cell state, which here is ``cell.state["C"]``.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.recurrent import LSTMCell
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> cell = LSTMCell(8, backend=be)
    >>> A = cell.forward(be.rng.normal((4, 3)))
    >>> A.shape, cell.state["C"].shape
    ((4, 8), (4, 8))
    """

    _lstm = True
    _trainable_names = ("Wf", "Wu", "Wc", "Wo", "bf", "bu", "bc", "bo")

    def __init__(self, n_out: int, act_fn: Any = "Tanh", gate_fn: Any = "Sigmoid",
                 init: Any = "glorot_uniform", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(n_out, act_fn, init, optimizer, backend, gate_fn=gate_fn)

    def forward(self, Xt: Array, retain_derived: bool = True) -> Array:
        """Advance one timestep: ``Xt`` of shape ``(n_ex, n_in)`` -> hidden state ``(n_ex, n_out)``."""
        state, W, b = self._step_inputs(Xt)
        A, C, cache = lstm_step_forward(Xt, state[0], state[1], W, b, self.act_fn, self.gate_fn,
                                        xp=self.xp)
        self._state = (A, C)
        self._push(retain_derived, X=Xt, A=A, C=C, _step=cache, _shape=tuple(A.shape))
        return A
