"""Shape layers: ``Flatten`` (an input volume into a matrix), ``Reshape`` (each example to a given
shape), ``Permute`` (the axes of each example) and ``Identity``."""

from __future__ import annotations

import math
from typing import Any

from anyml.backend import Array, Backend
from anyml.layers.base import LayerBase

__all__ = ["Flatten", "Identity", "Permute", "Reshape"]


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


class Reshape(LayerBase):
    """Reshape each example to ``target_shape``, keeping the first (examples) axis.

    Parameters
    ----------
    target_shape : tuple of int
        The shape of one example in the output; one entry may be ``-1`` (inferred).
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    ``(n_ex, *in_shape) -> (n_ex, *target_shape)`` in row-major (C) order; backward reshapes the
    gradient back. ``Reshape((-1,))`` is ``Flatten()``.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers import Reshape
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> Reshape((8, 8, 1), backend=be).forward(be.rng.normal((5, 64))).shape
    (5, 8, 8, 1)
    """

    def __init__(self, target_shape: Any, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.target_shape = _check_target(target_shape)

    def _config(self) -> dict[str, Any]:
        return {"target_shape": self.target_shape}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "target_shape":
            value = _check_target(value)
        super()._set_hyperparameter(key, value)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Return ``X`` reshaped to ``(n_ex, *target_shape)``."""
        self._check_input(X)
        if X.ndim < 1:
            msg = f"Reshape: expected X of shape (n_ex, ...), got {tuple(X.shape)}"
            raise ValueError(msg)
        n_ex, size = int(X.shape[0]), 1
        for dim in X.shape[1:]:
            size *= int(dim)
        known = 1
        for dim in self.target_shape:
            known *= dim if dim != -1 else 1
        fits = size % known == 0 if -1 in self.target_shape else size == known
        if not fits:
            msg = (f"Reshape: cannot reshape examples of shape {tuple(X.shape[1:])} ({size} values) "
                   f"to {self.target_shape}")
            raise ValueError(msg)
        Y = self.xp.reshape(X, (n_ex, *self.target_shape))
        self._push(retain_derived, X=X, _in_shape=tuple(X.shape), _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return the gradient reshaped to the input's shape."""
        cache = self._pop(dLdy)
        return self.xp.reshape(dLdy, cache["_in_shape"])


def _check_target(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    ok = isinstance(value, tuple | list) and len(value) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in value)
    if not ok or sum(d == -1 for d in value) > 1:
        msg = (f"Reshape: target_shape must be a non-empty tuple of positive integers with at most "
               f"one -1, got {value!r}")
        raise ValueError(msg)
    return tuple(int(d) for d in value)


class Permute(LayerBase):
    """Reorder the axes of each example, keeping the first (examples) axis.

    Parameters
    ----------
    dims : tuple of int
        A permutation of ``1, ..., k`` for inputs of ``k + 1`` axes: output axis ``i`` is input axis
        ``dims[i - 1]``. ``Permute((2, 1))`` turns the recurrent layers' ``(n_ex, n_out, n_t)`` into
        channels-last sequences ``(n_ex, n_t, n_out)``.
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    Backward applies the inverse permutation to the gradient.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers import Permute
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> Permute((2, 1), backend=be).forward(be.rng.normal((4, 16, 10))).shape
    (4, 10, 16)
    """

    def __init__(self, dims: Any, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.dims = _check_dims(dims)

    def _config(self) -> dict[str, Any]:
        return {"dims": self.dims}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "dims":
            value = _check_dims(value)
        super()._set_hyperparameter(key, value)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Return ``X`` with the axes of each example reordered."""
        self._check_input(X)
        if X.ndim != len(self.dims) + 1:
            msg = (f"Permute: dims={self.dims} needs inputs with {len(self.dims) + 1} axes, got "
                   f"shape {tuple(X.shape)}")
            raise ValueError(msg)
        Y = self.xp.permute_dims(X, (0, *self.dims))
        self._push(retain_derived, X=X, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return the gradient with the axes put back."""
        self._pop(dLdy)
        inverse = [0] * (len(self.dims) + 1)
        for i, d in enumerate((0, *self.dims)):
            inverse[d] = i
        return self.xp.permute_dims(dLdy, tuple(inverse))


def _check_dims(value: Any) -> tuple[int, ...]:
    ok = isinstance(value, tuple | list) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in value)
    if not ok or sorted(value) != list(range(1, len(value) + 1)):
        msg = f"Permute: dims must be a permutation of 1, ..., k, got {value!r}"
        raise ValueError(msg)
    return tuple(int(d) for d in value)


class Identity(LayerBase):
    """Return the input unchanged (the layer a standalone :class:`~anyml.wrappers.Dropout` wraps).

    Parameters
    ----------
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.
    """

    def __init__(self, optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Return ``X``."""
        self._check_input(X)
        self._push(retain_derived, X=X, _shape=tuple(X.shape))
        return X

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return ``dLdy``."""
        self._pop(dLdy)
        return dLdy
