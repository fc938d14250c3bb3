"""``Flatten``: reshape an input volume into a matrix."""

from __future__ import annotations

import math
from typing import Any

from anyml.backend import Backend
from anyml.layers.base import LayerBase

__all__ = ["Flatten"]

Array = Any


class Flatten(LayerBase):
    """Flatten a multidimensional input into a 2-D matrix.

    Parameters
    ----------
    keep_dim : {"first", "last", -1}
        ``"first"`` keeps the first axis (usually the examples): ``(n_ex, -1)``. ``"last"`` keeps the
        last axis: ``(-1, X.shape[-1])``. ``-1`` flattens everything into one row: ``(1, -1)``.
        Default ``"first"``. (The seed's text says ``(-1, X.shape[0])`` for ``"last"``; keeping the
        last axis is what the name promises, so that is what anyml does.)
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    Backward reshapes the gradient back to the input's shape.
    """

    def __init__(self, keep_dim: str | int = "first", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        if keep_dim not in ("first", "last", -1):
            msg = f"Flatten: keep_dim must be 'first', 'last' or -1, got {keep_dim!r}"
            raise ValueError(msg)
        self.keep_dim = keep_dim

    def _config(self) -> dict[str, Any]:
        return {"keep_dim": self.keep_dim}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "keep_dim" and value not in ("first", "last", -1):
            msg = f"Flatten: keep_dim must be 'first', 'last' or -1, got {value!r}"
            raise ValueError(msg)
        super()._set_hyperparameter(key, value)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Return ``X`` reshaped to two axes as ``keep_dim`` says."""
        self._check_input(X)
        if X.ndim < 1:
            msg = f"Flatten: expected X with at least one axis, got shape {tuple(X.shape)}"
            raise ValueError(msg)
        if self.keep_dim == "first":
            shape = (X.shape[0], math.prod(X.shape[1:]))  # -1 is ambiguous for 0 examples
        elif self.keep_dim == "last":
            shape = (-1, X.shape[-1])
        else:
            shape = (1, -1)
        Y = self.xp.reshape(X, shape)
        self._push(retain_derived, X=X, _in_shape=tuple(X.shape), _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return the gradient reshaped to the input's shape."""
        cache = self._pop(dLdy)
        return self.xp.reshape(dLdy, cache["_in_shape"])
