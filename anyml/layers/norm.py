"""Normalization layers: ``BatchNorm1D``, ``BatchNorm2D``, ``LayerNorm1D``, ``LayerNorm2D``."""

from __future__ import annotations

import math
from typing import Any

from anyml._validate import real
from anyml.activations import get_activation
from anyml.backend import Array, Backend
from anyml.functional.norm import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from anyml.layers.base import LayerBase

__all__ = ["BatchNorm1D", "BatchNorm2D", "LayerNorm1D", "LayerNorm2D"]



class _NormBase(LayerBase):
    """Shared plumbing: the scaler/intercept pair, lazy creation, shape checks."""

    _trainable_names = ("scaler", "intercept")
    _ndim = 2
    _shape_text = "(n_ex, n_in)"

    def _example_shape(self) -> tuple[int | None, ...]:
        raise NotImplementedError

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        # numpy-ml's summaries of normalization layers carry "act_fn": None
        if key == "act_fn":
            if value is not None and str(value) != str(get_activation(None)):
                msg = (f"{type(self).__name__}.set_params: normalization layers have no "
                       f"activation, got act_fn={value!r}")
                raise ValueError(msg)
            return
        super()._set_hyperparameter(key, value)

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {name: self._example_shape() for name in self._trainable_names}

    def _ones(self, shape: tuple[int, ...]) -> Array:
        return self.xp.ones(shape, dtype=self.backend.dtype, device=self.backend.device)

    def _zeros(self, shape: tuple[int, ...]) -> Array:
        return self.xp.zeros(shape, dtype=self.backend.dtype, device=self.backend.device)

    def _set_sizes(self, X_shape: tuple[int, ...]) -> None:
        raise NotImplementedError

    def _init_params(self, X_shape: tuple[int, ...]) -> None:
        """Create the parameters still missing (some may have come from :meth:`set_params`)."""
        self._set_sizes(X_shape)
        shape = tuple(int(d) for d in self._example_shape())  # type: ignore[arg-type]
        if "scaler" not in self.parameters:
            self._new_param("scaler", self._ones(shape))
        if "intercept" not in self.parameters:
            self._new_param("intercept", self._zeros(shape))

    def _prepare(self, X: Array) -> None:
        name = type(self).__name__
        self._check_input(X, ndim=self._ndim, shape=self._shape_text)
        if not self.is_initialized:
            self._init_params(tuple(int(d) for d in X.shape))
            return
        want = self._example_shape()
        got = tuple(int(d) for d in X.shape)
        features = got[1:] if len(want) > 1 else got[-1:]
        if features != tuple(want):
            expected = ", ".join(str(d) for d in want)
            msg = f"{name}: expected X of shape (n_ex, ..., {expected}), got {got}"
            raise ValueError(msg)


class _BatchNormBase(_NormBase):
    r"""Batch normalization over every axis but the last; see :class:`BatchNorm1D`."""

    _trainable_names = ("scaler", "intercept")
    _stat_names = ("running_mean", "running_var")

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, optimizer: Any = None, *,
                 sync: bool = False, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        name = type(self).__name__
        self.momentum = real(name, "momentum", momentum, low=0.0, high=1.0)
        self.epsilon = real(name, "epsilon", epsilon, low=0.0, low_open=True)
        self.n_in: int | None = None
        self.sync = _check_sync(name, sync)

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "sync":
            self.sync = _check_sync(type(self).__name__, value)
        else:
            super()._set_hyperparameter(key, value)

    def _reduce(self) -> Any:
        """The current communicator's allreduce when statistics are synchronized over its ranks."""
        if not self.sync:
            return None
        from anyml.distributed.context import get_comm

        comm = get_comm()
        return comm.allreduce if comm.size > 1 else None

    def _example_shape(self) -> tuple[int | None, ...]:
        return (self.n_in,)

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {name: (self.n_in,) for name in (*self._trainable_names, *self._stat_names)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if len(shape) >= 1:
            self.n_in = int(shape[-1])

    def _set_sizes(self, X_shape: tuple[int, ...]) -> None:
        self.n_in = X_shape[-1]

    def _init_params(self, X_shape: tuple[int, ...]) -> None:
        super()._init_params(X_shape)
        if not all(name in self.parameters for name in self._stat_names):
            self.reset_running_stats()

    def reset_running_stats(self) -> None:
        """Set the running mean to 0 and the running variance to 1 (nothing to do before the first
        forward, when the layer's size is not yet known)."""
        if self.n_in is None:
            return
        self.parameters["running_mean"] = self._zeros((self.n_in,))
        self.parameters["running_var"] = self._ones((self.n_in,))

    def _check_batch(self, X: Array) -> None:
        """Refuse a training batch with fewer than two values per feature: its variance is 0 (or
        undefined), so the output would be the intercept alone and the running variance would
        shrink towards 0 (or become NaN). PyTorch refuses it too."""
        per_feature = math.prod(int(d) for d in X.shape[:-1])
        if per_feature < 2:
            name = type(self).__name__
            what = "an empty batch" if per_feature == 0 else "one value per feature"
            msg = (f"{name}: a training batch needs at least 2 values per feature to estimate its "
                   f"variance, got {what} (X of shape {tuple(X.shape)}); use larger batches, or "
                   f"call eval() to normalize with the running statistics")
            raise ValueError(msg)

    @property
    def uses_batch_stats(self) -> bool:
        """Whether :meth:`forward` normalizes with the batch's statistics (training and not frozen)."""
        return self.training and self.trainable

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Normalize ``X`` per feature; see the class Notes for which statistics are used."""
        self._prepare(X)
        P = self.parameters
        if self.uses_batch_stats:
            reduce = self._reduce()
            if reduce is None:  # synchronized statistics: the batch is that of every rank together
                self._check_batch(X)
            Y, cache = batchnorm_forward(X, P["scaler"], P["intercept"], self.epsilon, xp=self.xp,
                                         reduce=reduce)
            if retain_derived:
                m = self.momentum
                shape = (int(self.n_in),)  # type: ignore[arg-type]
                P["running_mean"] = m * P["running_mean"] + (1.0 - m) * self.xp.reshape(cache.mean,
                                                                                      shape)
                P["running_var"] = m * P["running_var"] + (1.0 - m) * self.xp.reshape(cache.var,
                                                                                    shape)
        else:
            Y, cache = batchnorm_forward(X, P["scaler"], P["intercept"], self.epsilon,
                                         running_mean=P["running_mean"],
                                         running_var=P["running_var"], xp=self.xp)
        self._push(retain_derived, X=X, _norm=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L / \\partial X` and accumulate the gradients of scaler and intercept."""
        cache = self._pop(dLdy)
        dX, d_scaler, d_intercept = batchnorm_backward(dLdy, cache["_norm"], xp=self.xp,
                                                       consume_cache=True)  # popped: spent
        self._accumulate(retain_grads, scaler=d_scaler, intercept=d_intercept)
        return dX


class BatchNorm1D(_BatchNormBase):
    r"""Batch normalization of ``(n_ex, n_in)`` inputs, one mean and variance per feature.

    Parameters
    ----------
    momentum : float in [0, 1]
        How much of the running statistics survive each training batch (closer to 1: smoother).
        Default 0.9.
    epsilon : float
        Added to the variance before the square root. Default 1e-5.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    sync : bool
        Synchronized batch normalization: under a communicator of several ranks (data-parallel
        training, :mod:`anyml.distributed`), take the statistics of the global batch, all ranks'
        shares together, instead of this rank's share (see
        :func:`~anyml.functional.norm.batchnorm_forward`); :meth:`Sequential.sync_batchnorm
        <anyml.model.Sequential.sync_batchnorm>` switches a whole model. Default False.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    In training (``training`` is True, see :meth:`train`/:meth:`eval`, and the layer is not frozen):

    .. math::

        \mu = \frac{1}{n} \sum_i X_i, \quad \sigma^2 = \frac{1}{n} \sum_i (X_i - \mu)^2, \quad
        Y = \gamma \odot \frac{X - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    and, when ``retain_derived`` is True, the running statistics move towards the batch's:
    ``running = momentum * running + (1 - momentum) * batch``. The running variance uses the same
    biased batch variance as the normalization (as numpy-ml; PyTorch uses the unbiased one there).
    With ``retain_derived=False`` they are left alone, but the batch statistics are still used: which
    statistics normalize is decided by :meth:`train`/:meth:`eval` and :meth:`freeze` only (numpy-ml
    switches to the running statistics when ``retain_derived`` is False, which makes the output of a
    training step depend on whether it is retained).

    In inference (after :meth:`eval`) or when frozen, ``running_mean`` and ``running_var`` replace
    :math:`\mu` and :math:`\sigma^2` and are constants for the backward pass.

    A training batch must hold at least two values per feature (``n_ex >= 2`` here; for
    :class:`BatchNorm2D`, ``n_ex * in_rows * in_cols >= 2``): with one, the variance is 0 and the
    output the intercept alone, and an empty batch has no statistics at all; both raise a
    ``ValueError`` (as PyTorch does), and :meth:`anyml.model.Sequential.fit` never makes a last
    batch of one example. Inference takes batches of any size, empty ones included.

    Backward, through the batch statistics (:math:`\hat X` the normalized input,
    :math:`g = \gamma \odot \partial L/\partial Y`, bars are means over the batch):

    .. math::

        \frac{\partial L}{\partial X} = \frac{g - \bar g - \hat X\, \overline{g \odot \hat X}}
        {\sqrt{\sigma^2 + \epsilon}}, \quad
        \frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial Y_i} \odot \hat X_i,
        \quad \frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial Y_i}

    ``scaler`` (:math:`\gamma`) starts at one and ``intercept`` (:math:`\beta`) at zero (numpy-ml draws
    the scaler at random, which makes the freshly built layer a random rescaling). The running
    statistics sit in :attr:`parameters` so that checkpoints carry them, but have no gradient and no
    optimizer touches them.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.norm import BatchNorm1D
    >>> be = anyml.make_backend("numpy", dtype="float64", seed=0)
    >>> Y = BatchNorm1D(backend=be).forward(be.asarray([[1.0, 2.0], [3.0, 6.0]]))
    >>> Y.round(3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    """

    def _config(self) -> dict[str, Any]:
        return {"act_fn": None, "n_in": self.n_in, "n_out": self.n_in,
                "momentum": self.momentum, "epsilon": self.epsilon, "sync": self.sync}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key != "n_out":
            super()._set_hyperparameter(key, value)


class BatchNorm2D(_BatchNormBase):
    r"""Batch normalization of images ``(n_ex, in_rows, in_cols, in_ch)``, one mean and variance per
    channel (taken over the examples, rows and columns).

    Parameters and behaviour as :class:`BatchNorm1D`; ``scaler``, ``intercept``, ``running_mean`` and
    ``running_var`` have shape ``(in_ch,)``.

    Notes
    -----
    The equations of :class:`BatchNorm1D`, with the means over :math:`n = n_{ex} \cdot in_{rows} \cdot
    in_{cols}` values per channel.
    """

    _ndim = 4
    _shape_text = "(n_ex, in_rows, in_cols, in_ch)"

    @property
    def in_ch(self) -> int | None:
        """The number of channels (``None`` before the first forward)."""
        return self.n_in

    def _config(self) -> dict[str, Any]:
        return {"act_fn": None, "in_ch": self.n_in, "out_ch": self.n_in,
                "momentum": self.momentum, "epsilon": self.epsilon, "sync": self.sync}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "in_ch":
            self.n_in = None if value is None else int(value)
        elif key != "out_ch":
            super()._set_hyperparameter(key, value)


class LayerNorm1D(_NormBase):
    r"""Layer normalization of ``(n_ex, n_in)`` inputs: each example normalized over its features.

    Parameters
    ----------
    epsilon : float
        Added to the variance before the square root. Default 1e-5.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    The same in training and inference, per example :math:`x` with :math:`N` values:

    .. math::

        \mu = \frac{1}{N} \sum_j x_j, \quad \sigma^2 = \frac{1}{N} \sum_j (x_j - \mu)^2, \quad
        y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    with :math:`\gamma` (``scaler``, starting at one) and :math:`\beta` (``intercept``, starting at
    zero) of the shape of one example, applied elementwise. Backward, per example with
    :math:`g = \gamma \odot \partial L/\partial y` and bars as means over its :math:`N` values:

    .. math::

        \frac{\partial L}{\partial x} = \frac{g - \bar g - \hat x\, \overline{g \odot \hat x}}
        {\sqrt{\sigma^2 + \epsilon}}, \quad
        \frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial y_i} \odot \hat x_i,
        \quad \frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial y_i}
    """

    def __init__(self, epsilon: float = 1e-5, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.epsilon = real(type(self).__name__, "epsilon", epsilon, low=0.0, low_open=True)
        self.n_in: int | None = None

    def _example_shape(self) -> tuple[int | None, ...]:
        return (self.n_in,)

    def _set_sizes(self, X_shape: tuple[int, ...]) -> None:
        self.n_in = X_shape[1]

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if len(shape) >= 1:
            self.n_in = int(shape[-1])

    def _config(self) -> dict[str, Any]:
        return {"act_fn": None, "n_in": self.n_in, "n_out": self.n_in, "epsilon": self.epsilon}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key != "n_out":
            super()._set_hyperparameter(key, value)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Normalize each example of ``X``; returns an array shaped like ``X``."""
        self._prepare(X)
        P = self.parameters
        with self.backend.row_broadcasts(math.prod(X.shape[1:])):
            Y, cache = layernorm_forward(X, P["scaler"], P["intercept"], self.epsilon, xp=self.xp)
        self._push(retain_derived, X=X, _norm=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L / \\partial X` and accumulate the gradients of scaler and intercept."""
        cache = self._pop(dLdy)
        with self.backend.row_broadcasts(math.prod(dLdy.shape[1:])):
            dX, d_scaler, d_intercept = layernorm_backward(dLdy, cache["_norm"], xp=self.xp,
                                                           consume_cache=True)  # popped: spent
        self._accumulate(retain_grads, scaler=d_scaler, intercept=d_intercept)
        return dX


class LayerNorm2D(LayerNorm1D):
    r"""Layer normalization of images ``(n_ex, in_rows, in_cols, in_ch)``: each example normalized
    over all of its ``in_rows * in_cols * in_ch`` values.

    Parameters and equations as :class:`LayerNorm1D`; ``scaler`` and ``intercept`` have the shape of
    one example, ``(in_rows, in_cols, in_ch)``, and are learned from the first input.
    """

    _ndim = 4
    _shape_text = "(n_ex, in_rows, in_cols, in_ch)"

    def __init__(self, epsilon: float = 1e-5, optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(epsilon, optimizer, backend=backend)
        self.in_rows: int | None = None
        self.in_cols: int | None = None
        self.in_ch: int | None = None

    def _example_shape(self) -> tuple[int | None, ...]:
        return (self.in_rows, self.in_cols, self.in_ch)

    def _set_sizes(self, X_shape: tuple[int, ...]) -> None:
        self.in_rows, self.in_cols, self.in_ch = X_shape[1:]

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if len(shape) == 3:
            self.in_rows, self.in_cols, self.in_ch = (int(d) for d in shape)

    def _config(self) -> dict[str, Any]:
        return {"act_fn": None, "in_rows": self.in_rows, "in_cols": self.in_cols,
                "in_ch": self.in_ch, "out_ch": self.in_ch, "epsilon": self.epsilon}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key != "out_ch":
            super()._set_hyperparameter(key, value)


def _check_sync(owner: str, value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"{owner}: sync must be True or False, got {value!r}"
        raise TypeError(msg)
    return value
