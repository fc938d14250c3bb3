r"""Loss functions: the value of an objective and its gradient, on arrays of any backend.

Every loss is a :class:`Loss` with a ``Name(key=value, ...)`` string form that parses back to an equal
object (``get_loss("CrossEntropy(from_logits=True)")``). It offers

- ``loss(y, y_pred, ...)``: the objective, a **0-d array** of ``y_pred``'s backend, dtype and device
  (``float(value)`` gives a Python number). Keeping the value on the device lets a training loop sum
  losses without waiting for the device at every step; it converts to a Python float only when it
  prints;
- ``grad(y, y_pred, ...)``: the gradient of that same value, an array shaped like ``y_pred``.

Reduction
---------
``reduction="sum"`` (the default for :class:`SquaredError` and :class:`CrossEntropy`) adds the loss
of every example of the batch, as numpy-ml does; ``reduction="mean"`` divides that sum by the number of
examples ``n_ex = y_pred.shape[0]`` (not by the number of elements, unlike ``torch``'s ``"mean"``), and
the gradient is divided likewise. :class:`VAELoss` averages over the batch by default, as numpy-ml's
does.

Numerical safety
----------------
Probabilities are clipped to ``[eps, 1]`` (``[eps, 1 - eps]`` for Bernoulli outputs) before a
logarithm, with ``eps`` the machine epsilon *of the input's dtype*, so neither float32 nor float64 ever
takes ``log(0)``. ``CrossEntropy(from_logits=True)`` never forms probabilities at all: it takes the
log-softmax by the log-sum-exp identity, which is exact and stable for any logits. Prefer it for
training classifiers.

Not provided
------------
numpy-ml also has ``NCELoss`` (noise-contrastive estimation). It owns trainable output weights and
draws negative samples from a noise distribution at every call, so it is a layer with its own sampler
rather than a loss of ``(y, y_pred)``; it is left out until anyml has such a sampling layer.
"""

from __future__ import annotations

import math
from typing import Any

from anyml._spec import Registry, Spec
from anyml.activations import get_activation
from anyml.backend import Array, namespace_of, on_device_of
from anyml.functional.softmax import log_softmax, softmax_forward

__all__ = [
    "LOSSES",
    "CrossEntropy",
    "Loss",
    "SquaredError",
    "VAELoss",
    "get_loss",
]


_REDUCTIONS = ("sum", "mean")
#: (namespace, dtype, kind) -> xp.isdtype(dtype, kind); NumPy's isdtype is slow for every step.
_KINDS: dict[tuple[Any, Any, str], bool] = {}
#: (namespace, dtype) -> machine epsilon of dtype.
_EPS: dict[tuple[Any, Any], float] = {}


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, cached by (namespace, dtype, kind)."""
    key = (xp, dtype, kind)
    try:
        return _KINDS[key]
    except KeyError:
        out = _KINDS[key] = bool(xp.isdtype(dtype, kind))
        return out
    except TypeError:  # an unhashable dtype
        return bool(xp.isdtype(dtype, kind))


def _eps(xp: Any, dtype: Any) -> float:
    """The machine epsilon of the float ``dtype``, cached by (namespace, dtype)."""
    key = (xp, dtype)
    try:
        return _EPS[key]
    except KeyError:
        out = _EPS[key] = float(xp.finfo(dtype).eps)
        return out
    except TypeError:
        return float(xp.finfo(dtype).eps)


class Loss(Spec):
    """Base class of the losses.

    Attributes
    ----------
    reduction : {"sum", "mean"}
        How the per-example losses of a batch are combined (see the module docstring).
    """

    reduction: str = "sum"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("loss", "grad", "loss_and_grad"):  # computed on y_pred's device
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__anyml_activated__", False):
                setattr(cls, name, on_device_of(1)(method))

    def __init__(self, reduction: str = "sum") -> None:
        if reduction not in _REDUCTIONS:
            msg = f"{type(self).__name__}: reduction must be 'sum' or 'mean', got {reduction!r}"
            raise ValueError(msg)
        self.reduction = reduction

    def __call__(self, y: Array, y_pred: Array, *args: Array) -> Array:
        """The loss value; the same as :meth:`loss`."""
        return self.loss(y, y_pred, *args)

    def loss(self, y: Array, y_pred: Array, *args: Array) -> Array:
        """The loss value, a 0-d array of ``y_pred``'s backend and dtype."""
        raise NotImplementedError

    def grad(self, y: Array, y_pred: Array, *args: Any, **kwargs: Any) -> Any:
        """The gradient of :meth:`loss`; see the subclass."""
        raise NotImplementedError

    def loss_and_grad(self, y: Array, y_pred: Array, *args: Any, **kwargs: Any) -> tuple[Array, Any]:
        """``(loss(...), grad(...))`` of the same arguments, as a training step needs both.

        Losses that share work between the two (:class:`CrossEntropy`: the targets, checked and
        made one-hot once) override it; the results are those of the two calls.
        """
        return self.loss(y, y_pred, *args, **kwargs), self.grad(y, y_pred, *args, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _scale(self, y_pred: Array) -> float:
        """1 for ``"sum"``, ``1 / n_ex`` for ``"mean"``."""
        if self.reduction == "sum" or y_pred.ndim == 0:
            return 1.0
        return 1.0 / int(y_pred.shape[0])

    def _check_pair(self, y: Array, y_pred: Array, name: str = "y") -> Any:
        """The namespace of ``y_pred``, after checking ``y`` against it (namespace, device, shape)."""
        owner = type(self).__name__
        xp = namespace_of(y_pred)
        if type(y) is not type(y_pred):
            msg = (f"{owner}: {name} and y_pred must be arrays of the same library, got "
                   f"{type(y).__module__}.{type(y).__qualname__} and "
                   f"{type(y_pred).__module__}.{type(y_pred).__qualname__}; convert with "
                   f"backend.asarray({name})")
            raise TypeError(msg)
        if y.device != y_pred.device:
            msg = f"{owner}: {name} is on device {y.device!r} but y_pred on {y_pred.device!r}"
            raise TypeError(msg)
        if not _isdtype(xp, y_pred.dtype, "real floating"):
            msg = f"{owner}: expected y_pred of a real floating dtype, got {y_pred.dtype}"
            raise TypeError(msg)
        return xp

    def _check_same(self, xp: Any, y: Array, y_pred: Array, name: str = "y") -> None:
        owner = type(self).__name__
        if tuple(y.shape) != tuple(y_pred.shape):
            msg = (f"{owner}: expected {name} of the shape of y_pred {tuple(y_pred.shape)}, got "
                   f"{tuple(y.shape)}")
            raise ValueError(msg)
        if y.dtype != y_pred.dtype:
            msg = (f"{owner}: expected {name} of dtype {y_pred.dtype} (y_pred's), got {y.dtype}; "
                   f"a float64 target would turn a float32 loss into float64")
            raise TypeError(msg)


LOSSES: Registry[Loss] = Registry("loss", Loss)


class SquaredError(Loss):
    r"""Half the squared Euclidean distance, :math:`L = \tfrac12 \lVert \hat y - y \rVert_2^2`.

    Parameters
    ----------
    reduction : {"sum", "mean"}
        ``"sum"`` (default, as numpy-ml): the sum over every element of the batch; ``"mean"``: that sum
        divided by ``n_ex``.

    Notes
    -----
    .. math::

        L = \tfrac12 \sum_{i} (\hat y_i - y_i)^2, \qquad
        \frac{\partial L}{\partial \hat y} = \hat y - y, \qquad
        \frac{\partial L}{\partial z} = (\hat y - y) \odot f'(z) \ \text{ when } \hat y = f(z)

    :meth:`grad` gives the last form when the pre-activation ``z`` and the activation ``act_fn`` are
    passed (numpy-ml's signature) and the gradient wrt. ``y_pred`` when they are not; a model whose
    last layer applies its own activation wants the latter.

    Examples
    --------
    >>> import numpy as np
    >>> from anyml.losses import SquaredError
    >>> float(SquaredError().loss(np.zeros((2, 2)), np.ones((2, 2))))
    2.0
    """

    _spec_fields = ("reduction",)

    def loss(self, y: Array, y_pred: Array) -> Array:
        """:math:`\\tfrac12 \\sum (\\hat y - y)^2` (divided by ``n_ex`` for ``"mean"``), a 0-d array."""
        xp = self._check_pair(y, y_pred)
        self._check_same(xp, y, y_pred)
        diff = y_pred - y
        return xp.asarray(0.5 * self._scale(y_pred) * xp.sum(diff * diff))

    def grad(self, y: Array, y_pred: Array, z: Array | None = None, act_fn: Any = None) -> Array:
        """:math:`\\hat y - y`, times :math:`f'(z)` when ``z`` and ``act_fn`` are given.

        Parameters
        ----------
        y, y_pred : array of shape (n_ex, ...)
            Targets and predictions.
        z : array shaped like ``y_pred``, optional
            The pre-activation with ``y_pred = act_fn(z)``.
        act_fn : str, Activation or None
            The activation that produced ``y_pred`` from ``z``; needs ``z``.
        """
        xp = self._check_pair(y, y_pred)
        self._check_same(xp, y, y_pred)
        dy = y_pred - y
        if z is not None:
            self._check_pair(z, y_pred, "z")
            self._check_same(xp, z, y_pred, "z")
            dy = get_activation(act_fn).backward(z, dy)
        elif act_fn is not None:
            msg = "SquaredError.grad: act_fn needs the pre-activation z as well"
            raise ValueError(msg)
        scale = self._scale(y_pred)
        return dy if scale == 1.0 else dy * scale


class CrossEntropy(Loss):
    r"""Categorical cross-entropy, :math:`L = -\sum_i \sum_c y_{ic} \log p_{ic}`.

    Parameters
    ----------
    from_logits : bool
        ``False`` (default, as numpy-ml): ``y_pred`` holds probabilities (a softmax output) along the
        last axis. ``True``: ``y_pred`` holds unnormalized scores :math:`z` and
        :math:`\log p = z - \operatorname{logsumexp}(z)` is computed stably, softmax and loss fused.
    reduction : {"sum", "mean"}
        ``"sum"`` (default, as numpy-ml) over the batch, or divided by ``n_ex`` for ``"mean"``.

    Notes
    -----
    The classes lie along the last axis. ``y`` is either a float array shaped like ``y_pred`` (one-hot
    rows, or any distributions) or an integer array of class indices of shape ``y_pred.shape[:-1]``;
    the latter is turned into one-hot rows. Integer labels outside ``[0, n_classes)`` raise a
    ``ValueError`` (:meth:`check_labels`, one read-back from the device per call; pass
    ``check_labels=False`` to :meth:`loss` and :meth:`grad` when the labels were checked already),
    and so do float labels shaped like class indices.

    :meth:`grad` returns the gradient with respect to the **logits** :math:`z`, whichever input form
    is used (numpy-ml's convention: with ``from_logits=False`` the predictions are assumed to be
    :math:`p = \operatorname{softmax}(z)`, and the softmax Jacobian is folded in):

    .. math::

        \frac{\partial L}{\partial z_{ic}} = p_{ic} \textstyle\sum_k y_{ik} - y_{ic}

    which is numpy-ml's :math:`p - y` when each row of ``y`` sums to one. Multiplying by the softmax
    Jacobian in closed form avoids dividing by probabilities that may underflow to zero, so a model
    that ends with a ``Softmax`` layer starts its backward pass *below* that layer with this gradient
    (:class:`anyml.model.Sequential` does so). Without ``from_logits`` the probabilities are clipped
    to ``[eps, 1]`` (``eps`` of their dtype) before the logarithm.

    Examples
    --------
    >>> import numpy as np
    >>> from anyml.losses import CrossEntropy
    >>> logits = np.array([[0.0, 0.0]])
    >>> float(CrossEntropy(from_logits=True).loss(np.array([0]), logits))  # log 2
    0.6931471805599453
    """

    _spec_fields = ("from_logits", "reduction")

    def __init__(self, from_logits: bool = False, reduction: str = "sum") -> None:
        super().__init__(reduction)
        if not isinstance(from_logits, bool):
            msg = f"CrossEntropy: from_logits must be True or False, got {from_logits!r}"
            raise TypeError(msg)
        self.from_logits = from_logits

    def targets(self, y: Array, y_pred: Array, *, check_labels: bool = True) -> Array:
        """``y`` as float rows shaped like ``y_pred`` (integer class indices become one-hot).

        Parameters
        ----------
        y, y_pred : arrays
            Labels (class indices or rows) and predictions, see the class Notes.
        check_labels : bool
            Check that integer labels lie in ``[0, n_classes)`` (see :meth:`check_labels`).

        Raises
        ------
        ValueError
            For labels out of range, float labels shaped like class indices, or a shape that fits
            neither form.
        TypeError
            For labels that are neither integers nor floats of ``y_pred``'s dtype.
        """
        xp = self._check_pair(y, y_pred)
        if y_pred.ndim < 1:
            msg = f"CrossEntropy: expected y_pred with a class axis, got shape {tuple(y_pred.shape)}"
            raise ValueError(msg)
        n_classes = int(y_pred.shape[-1])
        if _isdtype(xp, y.dtype, "integral"):
            if tuple(y.shape) != tuple(y_pred.shape[:-1]):
                msg = (f"CrossEntropy: expected integer labels y of shape {tuple(y_pred.shape[:-1])} "
                       f"(y_pred's without the class axis), got {tuple(y.shape)}")
                raise ValueError(msg)
            if check_labels:
                self.check_labels(y, n_classes)
            classes = xp.arange(n_classes, dtype=y.dtype, device=y.device)
            return xp.astype(y[..., None] == classes, y_pred.dtype)
        if not _isdtype(xp, y.dtype, "real floating"):
            msg = (f"CrossEntropy: labels y must be integer class indices or float rows, got dtype "
                   f"{y.dtype}")
            raise TypeError(msg)
        if y.ndim == y_pred.ndim - 1 and tuple(y.shape) == tuple(y_pred.shape[:-1]):
            msg = (f"CrossEntropy: the labels y hold floats of shape {tuple(y.shape)}; class indices "
                   f"must be integers in [0, {n_classes}) (convert with astype), or give one-hot "
                   f"rows of y_pred's shape {tuple(y_pred.shape)}")
            raise ValueError(msg)
        self._check_same(xp, y, y_pred)
        return y

    @staticmethod
    def check_labels(y: Array, n_classes: int) -> None:
        """Raise a ``ValueError`` unless every integer label in ``y`` lies in ``[0, n_classes)``.

        A label out of range would otherwise be a zero row, a loss of 0 and no gradient: training
        on it silently. The check reads one boolean back from the device (a synchronization on a
        GPU); :class:`~anyml.model.Sequential` checks the labels where they enter instead, on the
        host, and calls the loss with ``check_labels=False``.
        """
        xp = namespace_of(y)
        if math.prod(int(d) for d in y.shape) == 0:
            return
        if not bool(xp.all((y >= 0) & (y < n_classes))):
            low, high = int(xp.min(y)), int(xp.max(y))
            msg = (f"CrossEntropy: class labels must lie in [0, {n_classes}) for y_pred of "
                   f"{n_classes} classes, got labels from {low} to {high}")
            raise ValueError(msg)

    def log_probs(self, y_pred: Array) -> Array:
        """:math:`\\log p` along the last axis: log-softmax of logits, or clipped log of probabilities."""
        xp = namespace_of(y_pred)
        if self.from_logits:
            return log_softmax(y_pred, axis=-1, xp=xp)
        eps = _eps(xp, y_pred.dtype)
        return xp.log(xp.minimum(xp.maximum(y_pred, eps), 1.0))  # clip syncs on CuPy

    def probs(self, y_pred: Array) -> Array:
        """The class probabilities: the softmax of logits, or ``y_pred`` itself."""
        if not self.from_logits:
            return y_pred
        return softmax_forward(y_pred, axis=-1, xp=namespace_of(y_pred))[0]

    def loss(  # type: ignore[override]  # a keyword the base class does not have
            self, y: Array, y_pred: Array, *, check_labels: bool = True) -> Array:
        """:math:`-\\sum y \\log p` (divided by ``n_ex`` for ``"mean"``), a 0-d array.

        ``check_labels``: see :meth:`targets` (integer labels are checked unless it is False)."""
        target = self.targets(y, y_pred, check_labels=check_labels)
        xp = namespace_of(y_pred)
        return xp.asarray(-self._scale(y_pred) * xp.sum(target * self.log_probs(y_pred)))

    def grad(self, y: Array, y_pred: Array, *, check_labels: bool = True) -> Array:
        """The gradient wrt. the logits, :math:`p \\sum_k y_k - y` (see Notes).

        ``check_labels``: see :meth:`targets`."""
        return self._grad_of(y, self.targets(y, y_pred, check_labels=check_labels), y_pred)

    def loss_and_grad(  # type: ignore[override]  # a keyword the base class does not have
            self, y: Array, y_pred: Array, *, check_labels: bool = True) -> tuple[Array, Array]:
        """``(loss(y, y_pred), grad(y, y_pred))``, the targets checked and built once."""
        target = self.targets(y, y_pred, check_labels=check_labels)
        xp = namespace_of(y_pred)
        value = xp.asarray(-self._scale(y_pred) * xp.sum(target * self.log_probs(y_pred)))
        return value, self._grad_of(y, target, y_pred)

    def _grad_of(self, y: Array, target: Array, y_pred: Array) -> Array:
        """The gradient wrt. the logits given :meth:`targets`' rows ``target`` of the labels ``y``."""
        xp = namespace_of(y_pred)
        if _isdtype(xp, y.dtype, "integral"):
            # one-hot rows: each sums to exactly 1, and p * 1 == p, so p - y is the same array as
            # p * sum(y) - y, for one kernel instead of three
            dz = self.probs(y_pred) - target
        else:
            dz = self.probs(y_pred) * xp.sum(target, axis=-1, keepdims=True) - target
        scale = self._scale(y_pred)
        return dz if scale == 1.0 else dz * scale


class VAELoss(Loss):
    r"""The negative evidence lower bound of a variational autoencoder with Bernoulli outputs.

    Parameters
    ----------
    reduction : {"mean", "sum"}
        ``"mean"`` (default, as numpy-ml) over the batch, or ``"sum"``.

    Notes
    -----
    For inputs :math:`y \in [0, 1]`, decoder outputs :math:`\hat y \in (0, 1)` and a Gaussian encoder
    :math:`q(t \mid x) = \mathcal{N}(\mu, \operatorname{diag} e^{\lambda})` with :math:`\mu` =
    ``t_mean`` and :math:`\lambda` = ``t_log_var``, each example contributes a reconstruction term
    (binary cross-entropy) and the closed-form KL divergence to :math:`\mathcal{N}(0, I)`:

    .. math::

        \ell = -\sum_j \big[y_j \log \hat y_j + (1 - y_j) \log (1 - \hat y_j)\big]
               - \tfrac12 \sum_k \big(1 + \lambda_k - \mu_k^2 - e^{\lambda_k}\big)

    and the gradients of the batch mean :math:`L = \frac1N \sum \ell` are

    .. math::

        \frac{\partial L}{\partial \hat y} = \frac{\hat y - y}{N \hat y (1 - \hat y)}, \qquad
        \frac{\partial L}{\partial \mu} = \frac{\mu}{N}, \qquad
        \frac{\partial L}{\partial \lambda} = \frac{e^{\lambda} - 1}{2N}

    :math:`\hat y` is clipped to :math:`[\epsilon, 1 - \epsilon]` (``eps`` of its dtype) in both.
    :meth:`grad` returns them in numpy-ml's order, ``(dY_pred, dLogVar, dMean)``.
    ``y`` and ``y_pred`` have shape ``(n_ex, ...)``; ``t_mean`` and ``t_log_var`` ``(n_ex, latent)``.
    """

    _spec_fields = ("reduction",)

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def _check(self, y: Array, y_pred: Array, t_mean: Array, t_log_var: Array) -> Any:
        xp = self._check_pair(y, y_pred)
        self._check_same(xp, y, y_pred)
        self._check_pair(t_mean, y_pred, "t_mean")
        self._check_pair(t_log_var, y_pred, "t_log_var")
        self._check_same(xp, t_log_var, t_mean, "t_log_var")
        if t_mean.dtype != y_pred.dtype or t_mean.ndim < 1 or t_mean.shape[0] != y_pred.shape[0]:
            msg = (f"VAELoss: expected t_mean of shape (n_ex={y_pred.shape[0]}, latent) and dtype "
                   f"{y_pred.dtype}, got {tuple(t_mean.shape)} and {t_mean.dtype}")
            raise ValueError(msg)
        return xp

    def _clipped(self, xp: Any, y_pred: Array) -> Array:
        eps = _eps(xp, y_pred.dtype)
        return xp.minimum(xp.maximum(y_pred, eps), 1.0 - eps)  # clip syncs on CuPy

    def loss(self, y: Array, y_pred: Array, t_mean: Array, t_log_var: Array) -> Array:
        """The reconstruction plus KL terms, averaged (or summed) over the batch; a 0-d array."""
        xp = self._check(y, y_pred, t_mean, t_log_var)
        p = self._clipped(xp, y_pred)
        rec = -xp.sum(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p))
        kl = -0.5 * xp.sum(1.0 + t_log_var - t_mean * t_mean - xp.exp(t_log_var))
        return xp.asarray(self._scale(y_pred) * (rec + kl))

    def grad(self, y: Array, y_pred: Array, t_mean: Array,
             t_log_var: Array) -> tuple[Array, Array, Array]:
        """``(dL/dy_pred, dL/dt_log_var, dL/dt_mean)``, numpy-ml's order (see Notes).

        The last two have the same shape, so the order matters silently: the log-variance's gradient
        comes second, the mean's third.
        """
        xp = self._check(y, y_pred, t_mean, t_log_var)
        p = self._clipped(xp, y_pred)
        scale = self._scale(y_pred)
        d_pred = scale * (p - y) / (p * (1.0 - p))
        d_mean = scale * t_mean
        d_log_var = (0.5 * scale) * (xp.exp(t_log_var) - 1.0)
        return d_pred, d_log_var, d_mean


LOSSES.register(SquaredError, "mse", "l2", "mean_squared_error")
LOSSES.register(CrossEntropy, "ce", "categorical_crossentropy", "categorical_cross_entropy", "nll")
LOSSES.register(VAELoss)


def get_loss(spec: Any) -> Loss:
    """Build a loss from a name or spec string, a dict ``{"id": name, ...}`` or a :class:`Loss`.

    Names match ignoring case, spaces, ``-`` and ``_``: ``"squared error"``, ``"cross_entropy"``,
    ``"CrossEntropy(from_logits=True, reduction='mean')"``, ``"VAELoss"``. Aliases: ``"mse"``,
    ``"l2"`` and ``"mean_squared_error"`` build :class:`SquaredError` (half the squared error, summed
    over an example's values: the *metric* ``"mse"`` of :mod:`anyml.metrics` is the plain mean);
    ``"ce"``, ``"categorical_crossentropy"`` and ``"nll"`` build :class:`CrossEntropy`.

    Raises
    ------
    ValueError
        For ``None``, an unknown name (the message lists the choices) or bad arguments.
    TypeError
        For an object of another kind.

    Examples
    --------
    >>> from anyml.losses import get_loss
    >>> get_loss("cross_entropy(from_logits=True)")
    CrossEntropy(from_logits=True, reduction='sum')
    >>> get_loss("mse")
    SquaredError(reduction='sum')
    """
    return LOSSES.get(spec)
