"""``Softmax``: the softmax nonlinearity as a layer."""

from __future__ import annotations

from typing import Any

from anyml._validate import integer
from anyml.backend import Array, Backend
from anyml.functional.softmax import softmax_backward, softmax_forward
from anyml.layers.base import LayerBase

__all__ = ["Softmax"]



class Softmax(LayerBase):
    r"""The softmax along one axis, :math:`y_i = e^{x_i} / \sum_j e^{x_j}`.

    A layer rather than an activation because its Jacobian is not elementwise.

    Parameters
    ----------
    dim : int
        The axis along which the outputs sum to one. Default ``-1``.
    optimizer : str, dict, Optimizer or None
        Unused (the layer has no parameters); kept for the common signature.
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    The input may have any number of axes (the seed documents ``(n_ex, n_in)``); ``dim`` must name one
    of them. The backward pass reuses the returned output :math:`y` (numpy-ml recomputes it from
    :math:`x`), so change a copy of it, not the output itself, before ``backward``. Backward:

    .. math:: \frac{\partial L}{\partial x} = y \odot \Big(\frac{\partial L}{\partial y}
              - \sum_k \frac{\partial L}{\partial y_k} y_k\Big)

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers import Softmax
    >>> be = anyml.make_backend("numpy", dtype="float64")
    >>> Softmax(backend=be).forward(be.asarray([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    """

    _summary_names = ("SoftmaxLayer",)  # numpy-ml's name in summaries
    _ignored_summary_keys = frozenset({"n_in", "n_out"})  # numpy-ml records them; any shape works here

    def __init__(self, dim: int = -1, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.dim = integer("Softmax", "dim", dim)

    def _config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Return the softmax of ``X`` along ``dim``."""
        self._check_input(X)
        if not -X.ndim <= self.dim < X.ndim:
            msg = f"Softmax: dim={self.dim} is out of range for X of shape {tuple(X.shape)}"
            raise ValueError(msg)
        if int(X.shape[self.dim]) == 0:  # a softmax over no values: an empty result
            Y, cache = self.xp.zeros_like(X), None
        else:
            Y, cache = softmax_forward(X, axis=self.dim, xp=self.xp)
        self._push(retain_derived, X=X, _softmax=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L / \\partial X`."""
        cache = self._pop(dLdy)
        if cache["_softmax"] is None:  # the empty softmax of forward
            return self.xp.zeros_like(dLdy)
        return softmax_backward(dLdy, cache["_softmax"], xp=self.xp)
