"""Layers that merge several inputs elementwise: ``Add`` and ``Multiply``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyml.activations import get_activation
from anyml.backend import Array, Backend
from anyml.layers.base import LayerBase

__all__ = ["Add", "Multiply"]


#: ``"X[0]"``, ``"X[1]"``, ...: the names of the inputs in messages, made once rather than per call
_INPUT_NAMES = tuple(f"X[{i}]" for i in range(16))


def _input_name(i: int) -> str:
    return _INPUT_NAMES[i] if i < len(_INPUT_NAMES) else f"X[{i}]"


class _Merge(LayerBase):
    """Shared input checks and bookkeeping of the elementwise merge layers."""

    def __init__(self, act_fn: Any = None, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.act_fn = get_activation(act_fn)

    def _config(self) -> dict[str, Any]:
        return {"act_fn": str(self.act_fn)}

    def _check_inputs(self, X: Sequence[Array]) -> list[Array]:
        name = type(self).__name__
        if isinstance(X, str) or not isinstance(X, list | tuple | Sequence) or len(X) < 1:
            msg = (f"{name}: expected X as a list of one or more arrays of the same shape, "
                   f"got {type(X).__name__}")
            raise TypeError(msg)
        arrays = list(X)
        shape = None
        for i, x in enumerate(arrays):
            self._check_input(x, name=_input_name(i))
            if shape is None:
                shape = tuple(x.shape)
            elif tuple(x.shape) != shape:
                msg = (f"{name}: expected all inputs of shape {shape} (that of X[0]), "
                       f"got X[{i}] of shape {tuple(x.shape)}")
                raise ValueError(msg)
        return arrays

    def _merge(self, arrays: list[Array]) -> tuple[Array, Any]:
        """Return ``Z`` and whatever else :meth:`_input_grads` needs from the forward pass."""
        raise NotImplementedError

    def _input_grads(self, dZ: Array, arrays: list[Array], saved: Any) -> list[Array]:
        raise NotImplementedError

    def forward(self, X: Sequence[Array], retain_derived: bool = True) -> Array:
        """Merge the list ``X`` elementwise and apply the activation."""
        arrays = self._check_inputs(X)
        Z, saved = self._merge(arrays)
        Y = self.act_fn(Z)
        self._push(retain_derived, X=arrays, Z=Z, _saved=saved, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdY: Array, retain_grads: bool = True) -> list[Array]:
        """Return the list of gradients wrt. each input, in input order."""
        cache = self._pop(dLdY)
        return self._input_grads(self.act_fn.backward(cache["Z"], dLdY), cache["X"], cache["_saved"])


class Add(_Merge):
    r"""The sum of its inputs through an optional activation, :math:`Y = f(\sum_i X_i)`.

    Parameters
    ----------
    act_fn : str, Activation or None
        The output nonlinearity; ``None`` is the identity.
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    With :math:`Z = \sum_i X_i`, every input receives the same gradient:
    :math:`\partial L / \partial X_i = \partial L / \partial Y \odot f'(Z)`.
    ``forward`` takes a list of arrays of one shape; ``backward`` returns a list of gradients, each
    its own array (the first may be ``dLdY`` itself when the activation is the identity).
    numpy-ml calls this layer ``Sum`` in its summaries; those load too.
    """

    _summary_names = ("Sum",)

    def _merge(self, arrays: list[Array]) -> tuple[Array, Any]:
        Z = arrays[0]
        for x in arrays[1:]:
            Z = Z + x
        return Z, None

    def _input_grads(self, dZ: Array, arrays: list[Array], saved: Any) -> list[Array]:
        # distinct arrays, so that a caller adding into one gradient does not change the others
        return [dZ] + [self.xp.asarray(dZ, copy=True) for _ in arrays[1:]]


class Multiply(_Merge):
    r"""The elementwise product of its inputs through an optional activation,
    :math:`Y = f(\prod_i X_i)`.

    Parameters
    ----------
    act_fn : str, Activation or None
        The output nonlinearity; ``None`` is the identity.
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters).
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    With :math:`Z = \prod_i X_i`, the gradient of input :math:`i` is the upstream gradient times the
    product of the *other* inputs:
    :math:`\partial L / \partial X_i = \partial L / \partial Y \odot f'(Z) \odot \prod_{j \ne i} X_j`.
    The products are built from prefix products (kept from the forward pass) and suffix products, so a
    zero in one input does not turn the others' gradients into NaN (as dividing :math:`Z` by
    :math:`X_i` would); ``n`` inputs cost ``n - 1`` products forward and ``2 (n - 1)`` backward.
    """

    def _merge(self, arrays: list[Array]) -> tuple[Array, Any]:
        # the prefix products X_0 ... X_i, kept for the backward pass (the last one is Z)
        prefix = [arrays[0]]
        for x in arrays[1:]:
            prefix.append(prefix[-1] * x)
        return prefix[-1], prefix[:-1]

    def _input_grads(self, dZ: Array, arrays: list[Array], saved: Any) -> list[Array]:
        # dX_i = (dZ * X_{n-1} * ... * X_{i+1}) * (X_0 * ... * X_{i-1}): a running suffix product
        # times the prefixes kept by the forward pass, 2 (n - 1) products in all. The prefixes past
        # X_0 were made by the forward pass and are dropped after this call (their cache entry is
        # popped), so they take the products in place instead of new arrays.
        n = len(arrays)
        grads = [dZ] * n
        suffix = dZ
        for i in range(n - 1, 0, -1):
            if i > 1:
                grads[i] = saved[i - 1]
                grads[i] *= suffix
            else:
                grads[i] = suffix * saved[0]
            if suffix is dZ:
                suffix = dZ * arrays[i]
            else:
                suffix *= arrays[i]  # an array made here, not the caller's
        grads[0] = suffix
        return grads
