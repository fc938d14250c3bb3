"""Dense layers: ``FullyConnected``."""

from __future__ import annotations

from typing import Any

from anyml._validate import positive_int
from anyml.activations import get_activation
from anyml.backend import Array, Backend
from anyml.functional.linear import linear_backward, linear_forward
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase

__all__ = ["FullyConnected"]


class FullyConnected(LayerBase):
    r"""A fully connected (dense) layer, :math:`Y = f(XW + b)`.

    Parameters
    ----------
    n_out : int or None
        The number of output features. ``None`` leaves it to be set later with
        ``set_params({"n_out": ...})`` (numpy-ml builds a layer whose size depends on the data so);
        :meth:`forward` refuses to run until it is set.
    act_fn : str, Activation or None
        The elementwise output nonlinearity :math:`f`; ``None`` is the identity. Default ``None``.
    init : str or Initializer
        How ``W`` is drawn (``b`` starts at zero). Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    With :math:`Z = XW + b` and upstream gradient :math:`\partial L / \partial Y`:

    .. math::

        \frac{\partial L}{\partial Z} = \frac{\partial L}{\partial Y} \odot f'(Z), \quad
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z} W^\top, \quad
        \frac{\partial L}{\partial W} = X^\top \frac{\partial L}{\partial Z}, \quad
        \frac{\partial L}{\partial b} = \textstyle\sum_i \frac{\partial L}{\partial Z_i}

    ``W`` has shape ``(n_in, n_out)`` and ``b`` shape ``(n_out,)`` (numpy-ml's ``(1, n_out)`` loads
    through ``set_params``); ``n_in`` is learned from the first input. (numpy-ml writes
    :math:`f(WX + b)`, but its arrays are laid out as here.)

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers import FullyConnected
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = FullyConnected(3, act_fn="ReLU", backend=be)
    >>> Y = layer.forward(be.rng.normal((4, 5)))
    >>> Y.shape, layer.parameters["W"].shape
    ((4, 3), (5, 3))
    """

    _trainable_names = ("W", "b")
    #: ``linear_backward`` makes both gradients anew (a product and a sum): the first after a flush
    #: becomes the gradient itself (see :meth:`LayerBase._accumulate`)
    _fresh_gradients = frozenset(_trainable_names)

    def __init__(self, n_out: int | None, act_fn: Any = None, init: Any = "glorot_uniform",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.n_out: int | None = None if n_out is None else positive_int("FullyConnected", "n_out",
                                                                          n_out)
        self.n_in: int | None = None
        self.act_fn = get_activation(act_fn)
        self.init = init
        get_initializer(init)  # fail early on an unknown name

    def _config(self) -> dict[str, Any]:
        return {"init": str(self.init), "n_in": self.n_in, "n_out": self.n_out,
                "act_fn": str(self.act_fn)}

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if key == "W" and len(shape) == 2:
            self.n_in = int(shape[0])
            if self.n_out is None:
                self.n_out = int(shape[1])
        elif key == "b" and self.n_out is None and len(shape) >= 1:
            self.n_out = int(shape[-1])

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key != "n_out":
            super()._set_hyperparameter(key, value)
            return
        n_out = None if value is None else positive_int("FullyConnected.set_params", "n_out", value)
        if n_out != self.n_out:  # weights of another size no longer apply: drawn again or loaded
            for name in ("W", "b"):
                self.parameters.pop(name, None)
                self.gradients.pop(name, None)
            self._caches.clear()
        self.n_out = n_out

    def _init_params(self, n_in: int) -> None:
        if self.n_out is None:
            msg = ("FullyConnected: n_out is not set; give it to the constructor or set it with "
                   "set_params({'n_out': ...}) before the first forward")
            raise ValueError(msg)
        self.n_in = n_in
        weights = get_initializer(self.init, act_fn=self.act_fn)
        self._new_param("W", weights((n_in, self.n_out), self.backend.host_rng))
        self._new_param("b", self.backend.xp.zeros((self.n_out,), dtype=self.backend.dtype,
                                                   device=self.backend.device))

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Compute :math:`Y = f(XW + b)` for ``X`` of shape ``(n_ex, n_in)``; returns ``(n_ex, n_out)``."""
        self._check_input(X, ndim=2, shape="(n_ex, n_in)")
        if not self.is_initialized:
            self._init_params(int(X.shape[1]))
        elif X.shape[1] != self.n_in:
            msg = f"FullyConnected: expected X of shape (n_ex, {self.n_in}), got {tuple(X.shape)}"
            raise ValueError(msg)
        P = self.parameters
        Z, cache = linear_forward(X, P["W"], P["b"], xp=self.xp)
        Y = self.act_fn(Z)
        self._push(retain_derived, X=X, Z=Z, _linear=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L/\\partial X` and accumulate the gradients of ``W`` and ``b``."""
        cache = self._pop(dLdy)
        dZ = self.act_fn.backward(cache["Z"], dLdy)
        dX, dW, db = linear_backward(dZ, cache["_linear"], xp=self.xp)
        self._accumulate(retain_grads, W=dW, b=db)
        return dX
