r"""Single-step recurrent layers: ``RNNCell`` and ``LSTMCell`` (importable from
:mod:`anyml.layers.recurrent`).

A cell takes one timestep ``(n_ex, n_in)`` and returns the new hidden state ``(n_ex, n_out)`` (an
``LSTMCell`` returns the pair ``(At, Ct)``, hidden and cell state, as numpy-ml does), and carries its
hidden (and cell) state from one ``forward`` to the next until :meth:`~RNNCell.reset_state`; see
:mod:`anyml.layers.recurrent` for the state lifecycle.
"""

from __future__ import annotations

from typing import Any

from anyml.backend import Array, Backend
from anyml.functional.recurrent import (
    lstm_step_backward,
    lstm_step_forward,
    rnn_step_backward,
    rnn_step_forward,
)
from anyml.layers._recurrent_base import _Recurrent

__all__ = ["LSTMCell", "RNNCell"]



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
        As for :class:`~anyml.layers.recurrent.RNN`.

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
        As for :class:`~anyml.layers.recurrent.LSTM`.

    Notes
    -----
    The equations are those of :class:`~anyml.layers.recurrent.LSTM` for one step, with all four
    gates from one matrix product of :math:`[A_{t-1}, X_t]` with the packed weights (packed once and
    reused while the parameters stay the same). The state lifecycle is that of :class:`RNNCell`.

    ``forward`` returns the pair ``(At, Ct)`` of the spec: the new hidden state and the new cell
    state (also ``cell.state["A"]`` and ``cell.state["C"]``). ``backward(dLdAt)`` takes the gradient
    wrt. ``At`` only: the cell state's gradient flows between steps inside the layer, and ``Ct``
    is not an output that a loss may depend on directly.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.recurrent import LSTMCell
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> cell = LSTMCell(8, backend=be)
    >>> At, Ct = cell.forward(be.rng.normal((4, 3)))
    >>> At.shape, Ct.shape
    ((4, 8), (4, 8))
    >>> cell.backward(be.xp.ones_like(At)).shape
    (4, 3)
    """

    _lstm = True
    _trainable_names = ("Wf", "Wu", "Wc", "Wo", "bf", "bu", "bc", "bo")

    def __init__(self, n_out: int, act_fn: Any = "Tanh", gate_fn: Any = "Sigmoid",
                 init: Any = "glorot_uniform", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(n_out, act_fn, init, optimizer, backend, gate_fn=gate_fn)

    def forward(  # type: ignore[override]  # the seed's signature: two outputs
            self, Xt: Array, retain_derived: bool = True) -> tuple[Array, Array]:
        """Advance one timestep.

        Parameters
        ----------
        Xt : array of shape (n_ex, n_in)
            The input at this timestep.
        retain_derived : bool
            Keep what :meth:`backward` needs for this step.

        Returns
        -------
        At : array of shape (n_ex, n_out)
            The hidden state after this step (what :meth:`backward` differentiates).
        Ct : array of shape (n_ex, n_out)
            The cell state after this step.
        """
        state, W, b = self._step_inputs(Xt)
        A, C, cache = lstm_step_forward(Xt, state[0], state[1], W, b, self.act_fn, self.gate_fn,
                                        xp=self.xp)
        self._state = (A, C)
        self._push(retain_derived, X=Xt, A=A, C=C, _step=cache, _shape=tuple(A.shape))
        return A, C
