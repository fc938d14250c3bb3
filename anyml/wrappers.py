"""Layer wrappers: objects that wrap a layer, change how it is applied, and delegate the rest.

:class:`Dropout` is the one wrapper so far; :class:`WrapperBase` holds what any wrapper shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anyml.backend import Array, Backend
from anyml.distributed import noise
from anyml.layers.base import LayerBase, accepts_gradient_list, activate_device_methods

__all__ = ["Dropout", "WrapperBase"]


class WrapperBase:
    """Base class of layer wrappers.

    A wrapper has the layer API (``forward``, ``backward``, ``update``, ``parameters``, ``gradients``,
    ``summary``, ``set_params``, ``freeze``, ``train``/``eval`` ...) and hands everything that is not
    its own business to the wrapped layer: the parameters and gradients are the wrapped layer's own
    dicts, and attributes it does not define (``n_out``, ``act_fn``, ...) are looked up there too.

    Its own settings appear in :attr:`hyperparameters` as one entry of the list under ``"wrappers"``
    (outermost wrapper last), so a summary records how the layer was wrapped.

    Parameters
    ----------
    wrapped_layer : LayerBase or WrapperBase
        The layer to wrap (wrappers can be nested).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("backward")
        if method is not None:  # numpy-ml's list form, as for the layers
            cls.backward = accepts_gradient_list(method)  # type: ignore[attr-defined]
        activate_device_methods(cls)

    def __init__(self, wrapped_layer: LayerBase | WrapperBase) -> None:
        if not isinstance(wrapped_layer, LayerBase | WrapperBase):
            msg = (f"{type(self).__name__}: expected a layer to wrap, got "
                   f"{type(wrapped_layer).__module__}.{type(wrapped_layer).__qualname__}")
            raise TypeError(msg)
        self._base_layer = wrapped_layer
        self.training = True
        self._wrapper_caches: list[Any] = []

    # ------------------------------------------------------------------ to override
    def _wrapper_config(self) -> dict[str, Any]:
        """The wrapper's own settings (JSON-friendly)."""
        return {}

    def _set_wrapper_config(self, config: Mapping[str, Any]) -> None:
        """Restore the wrapper's own settings from its entry of ``hyperparameters["wrappers"]``."""

    def _wrapper_derived(self, cache: Any) -> dict[str, Any]:
        """What one retained wrapper cache shows in :attr:`derived_variables`."""
        return {}

    def _retained_output_shapes(self) -> list[tuple[int, ...]]:
        """The output shape of each of this wrapper's retained forward passes, oldest first."""
        n = len(self._wrapper_caches)
        return self._base_layer._retained_output_shapes()[-n:] if n else []

    def _collate_list_grads(self, grads: list[Any]) -> Any:
        return grads

    # ------------------------------------------------------------------ delegation
    @property
    def base_layer(self) -> LayerBase | WrapperBase:
        """The wrapped layer."""
        return self._base_layer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._base_layer, name)

    @property
    def backend(self) -> Backend:
        return self._base_layer.backend

    @property
    def xp(self) -> Any:
        return self._base_layer.xp

    @property
    def parameters(self) -> dict[str, Array]:
        """The wrapped layer's parameters (the same dict)."""
        return self._base_layer.parameters

    @property
    def gradients(self) -> dict[str, Array]:
        """The wrapped layer's gradients (the same dict)."""
        return self._base_layer.gradients

    @property
    def optimizer(self) -> Any:
        return self._base_layer.optimizer

    @property
    def trainable(self) -> bool:
        """Whether the wrapped layer is trainable (see :meth:`freeze`)."""
        return bool(self._base_layer.trainable)

    @property
    def is_initialized(self) -> bool:
        return bool(self._base_layer.is_initialized)

    @property
    def X(self) -> list[Any]:
        """The inputs of the retained forward passes of the wrapped layer."""
        return self._base_layer.X

    @property
    def derived_variables(self) -> dict[str, list[Array]]:
        """The wrapped layer's derived variables plus the wrapper's own (oldest first)."""
        out = dict(self._base_layer.derived_variables)
        for cache in self._wrapper_caches:
            for key, value in self._wrapper_derived(cache).items():
                out.setdefault(key, []).append(value)
        return out

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The wrapped layer's hyperparameters, with this wrapper appended to ``"wrappers"``."""
        return self._with_this_wrapper(self._base_layer.hyperparameters)

    def _with_this_wrapper(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        hp = dict(hyperparameters)
        hp["wrappers"] = [*hp.get("wrappers", []),
                          {"wrapper": type(self).__name__, **self._wrapper_config()}]
        return hp

    def freeze(self) -> None:
        """Freeze the wrapped layer (a frozen layer also counts as in inference for the wrapper)."""
        self._base_layer.freeze()

    def unfreeze(self) -> None:
        """Unfreeze the wrapped layer."""
        self._base_layer.unfreeze()

    def train(self, mode: bool = True) -> WrapperBase:
        """Switch the wrapper and the wrapped layer to training (or inference) behaviour."""
        self.training = bool(mode)
        self._base_layer.train(mode)
        return self

    def eval(self) -> WrapperBase:
        """Switch to inference behaviour (same as ``train(False)``)."""
        return self.train(False)

    def flush_gradients(self) -> None:
        """Zero the wrapped layer's gradients and drop every retained forward pass."""
        self._wrapper_caches.clear()
        self._base_layer.flush_gradients()

    def update(self, cur_loss: float | None = None, *, check_finite: bool = True) -> None:
        """Update the wrapped layer's parameters (then drop every retained forward pass)."""
        self._wrapper_caches.clear()
        self._base_layer.update(cur_loss, check_finite=check_finite)

    def _finite_flag(self) -> Array | None:
        return self._base_layer._finite_flag()

    def _finite_parts(self) -> list[Array]:
        return self._base_layer._finite_parts()

    def _raise_if_not_finite(self, step: int | None = None) -> None:
        self._base_layer._raise_if_not_finite(step)

    def to(self, backend: str | Backend) -> WrapperBase:
        """Move the wrapped layer to another backend; return the wrapper."""
        self._wrapper_caches.clear()
        self._base_layer.to(backend)
        return self

    def summary(self) -> dict[str, Any]:
        """The wrapped layer's summary, with the wrappers recorded in its hyperparameters.

        It loads into a wrapper of the same structure or into the bare layer (which ignores
        ``"wrappers"``).
        """
        summary = self._base_layer.summary()  # one host copy of the parameters and optimizer state
        summary["hyperparameters"] = self._with_this_wrapper(summary["hyperparameters"])
        return summary

    def set_params(self, summary_dict: Mapping[str, Any]) -> WrapperBase:
        """Set the wrapper's settings and the wrapped layer's from a :meth:`summary`; return self.

        The last entry of ``hyperparameters["wrappers"]`` is this wrapper's when its ``"wrapper"``
        names this class; the others are handed on to the wrapped layer. numpy-ml's top-level
        ``"layer_wrappers"`` key is accepted and ignored.
        """
        summary = dict(summary_dict)
        summary.pop("layer_wrappers", None)
        hp = summary.get("hyperparameters")
        wrappers = list((hp if isinstance(hp, Mapping) else summary).get("wrappers", []))
        if wrappers and wrappers[-1].get("wrapper") == type(self).__name__:
            self._set_wrapper_config(wrappers.pop())
        if isinstance(hp, Mapping):
            summary["hyperparameters"] = {**hp, "wrappers": wrappers}
        elif "wrappers" in summary:
            summary["wrappers"] = wrappers
        self._base_layer.set_params(summary)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._wrapper_config().items())
        return f"{type(self).__name__}({self._base_layer!r}, {args})"


activate_device_methods(WrapperBase)


class Dropout(WrapperBase):
    r"""Inverted dropout on the input of a layer.

    Parameters
    ----------
    wrapped_layer : LayerBase or WrapperBase, optional
        The layer whose input is dropped out. Left out (``Dropout(0.5)`` or ``Dropout(p=0.5)``), it
        is an :class:`~anyml.layers.shape.Identity`: dropout as a layer of its own in a
        :class:`~anyml.model.Sequential`, applied to the output of the layer before it.
    p : float in [0, 1)
        The probability of dropping (zeroing) each input value.
    backend : str or Backend, optional
        The backend of the identity layer when none is wrapped; default the current backend.

    Notes
    -----
    While active, each forward draws a keep-mask :math:`M` of Bernoulli(:math:`1 - p`) values, shaped
    like the input, from the backend's seeded generator, and computes

    .. math::

        Y = f\Big(\frac{M \odot X}{1 - p}\Big), \qquad
        \frac{\partial L}{\partial X} = \frac{M}{1 - p} \odot
        \frac{\partial f}{\partial X}\Big(\frac{\partial L}{\partial Y}\Big)

    where :math:`f` is the wrapped layer; the scaling keeps the expected input unchanged, so nothing
    needs rescaling in inference. The backward pass reuses the mask of the matching forward (kept on a
    stack like the layers' caches, and shown as ``dropout_mask`` in :attr:`derived_variables`) and
    never writes into the caller's ``dLdy``.

    Dropout is active when :attr:`training` is True (see :meth:`train`/:meth:`eval`) and the wrapped
    layer is not frozen (a frozen layer is treated as in inference, as in numpy-ml), and ``p > 0``.
    Otherwise the input goes through unchanged.

    numpy-ml scales the layer's output instead of its input and never applies the mask in the backward
    pass (and scales ``dLdy`` in place); here the gradient is that of the function computed.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.dense import FullyConnected
    >>> from anyml.wrappers import Dropout
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = Dropout(FullyConnected(3, backend=be), p=0.5)
    >>> layer.forward(be.rng.normal((4, 2))).shape
    (4, 3)
    >>> Dropout(0.5, backend=be)    # a layer of its own
    Dropout(Identity(), p=0.5)
    """

    def __init__(self, wrapped_layer: LayerBase | WrapperBase | float | None = None,
                 p: float | None = None, *, backend: str | Backend | None = None) -> None:
        if p is None and not isinstance(wrapped_layer, LayerBase | WrapperBase | None):
            wrapped_layer, p = None, wrapped_layer  # Dropout(0.5): a layer of its own
        if wrapped_layer is None:
            from anyml.layers.shape import Identity

            wrapped_layer = Identity(backend=backend)
        if p is None:
            msg = "Dropout: p (the drop probability) is required, e.g. Dropout(layer, p=0.5)"
            raise ValueError(msg)
        super().__init__(wrapped_layer)  # type: ignore[arg-type]  # (a number is refused there)
        self.p = self._check_p(p)

    @staticmethod
    def _check_p(p: Any) -> float:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
            msg = f"Dropout: p (the drop probability) must be a number in [0, 1), got {p!r}"
            raise ValueError(msg)
        return float(p)

    def _wrapper_config(self) -> dict[str, Any]:
        return {"p": self.p}

    def _set_wrapper_config(self, config: Mapping[str, Any]) -> None:
        if "p" in config:
            self.p = self._check_p(config["p"])

    def _wrapper_derived(self, cache: Any) -> dict[str, Any]:
        return {"dropout_mask": cache[0]}

    @property
    def active(self) -> bool:
        """Whether :meth:`forward` drops inputs now (training, not frozen, ``p > 0``)."""
        return self.training and self.trainable and self.p > 0

    def forward(self, X: Array, retain_derived: bool = True, *, mask: Array | None = None) -> Array:
        """Apply the wrapped layer to the dropped-out input.

        Parameters
        ----------
        X : array
            The wrapped layer's input.
        retain_derived : bool
            Keep what :meth:`backward` needs (here and in the wrapped layer).
        mask : array shaped like X, optional
            A keep-mask (1 keeps, 0 drops) to use instead of a random draw while dropout is active;
            ignored otherwise.
        """
        self.backend.check_array(X, "Dropout", "X")
        keep = None
        if self.active:
            if mask is None:
                mask = noise.draw(self.backend, "bernoulli", tuple(X.shape), 1.0 - self.p, dtype=X.dtype)
            else:
                self.backend.check_array(mask, "Dropout", "mask")
                if tuple(mask.shape) != tuple(X.shape):
                    msg = (f"Dropout: expected mask of shape {tuple(X.shape)} (the input's), got "
                           f"{tuple(mask.shape)}")
                    raise ValueError(msg)
                mask = self.xp.astype(mask, X.dtype)
            keep = mask * (1.0 / (1.0 - self.p))
            X = X * keep
        Y = self._base_layer.forward(X, retain_derived=retain_derived)
        if retain_derived:
            self._wrapper_caches.append((mask, keep))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Backpropagate through the wrapped layer, then through the mask of the matching forward."""
        if not self._wrapper_caches:
            msg = ("Dropout: backward called with no retained forward pass; call "
                   "forward(..., retain_derived=True) first")
            raise RuntimeError(msg)
        _, keep = self._wrapper_caches[-1]
        dX = self._base_layer.backward(dLdy, retain_grads=retain_grads)
        self._wrapper_caches.pop()  # only once the wrapped layer accepted dLdy
        return dX if keep is None else dX * keep
