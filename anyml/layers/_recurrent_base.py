"""What the recurrent layers share: hyperparameters, parameter shapes and input checks.

The sequence layers live in :mod:`anyml.layers.recurrent`, the single-step cells in
:mod:`anyml.layers._recurrent_cells` (re-exported by :mod:`anyml.layers.recurrent`).
"""

from __future__ import annotations

from typing import Any

from anyml._validate import positive_int
from anyml.activations import Activation, get_activation
from anyml.backend import Array, Backend
from anyml.functional.recurrent import lstm_pack, lstm_unpack, rnn_pack, rnn_unpack
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase


class _Recurrent(LayerBase):
    """What the four recurrent layers share: hyperparameters, parameter shapes and input checks."""

    _lstm = False
    _seq_shape = "(n_ex, n_in, n_t)"

    def __init__(self, n_out: int, act_fn: Any, init: Any, optimizer: Any,
                 backend: str | Backend | None, gate_fn: Any = None) -> None:
        name = type(self).__name__
        n_out = positive_int(name, "n_out", n_out)
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

