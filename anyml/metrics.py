r"""Metrics that :class:`~anyml.model.Sequential` reports next to the loss.

A metric maps a minibatch of targets :math:`y` and model outputs :math:`\hat y` to the **sum over its
examples** of a per-example score, a 0-d array of the backend (no device synchronization); the model
adds these sums over an epoch and divides by the number of examples when it logs them. Metrics are
given like the other families: an object, a name (``"accuracy"``, ``"top_k_accuracy"``, ``"mae"``,
``"mse"``), or a spec string (``"TopKAccuracy(k=3)"``).

Examples
--------
>>> import numpy as np
>>> from anyml.metrics import get_metric
>>> out = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
>>> y = np.array([2, 0])
>>> float(get_metric("accuracy")(y, out)), float(get_metric("TopKAccuracy(k=2)")(y, out))
(1.0, 2.0)
>>> get_metric("top_k_accuracy(k=2)").name
'top_2_accuracy'
"""

from __future__ import annotations

from typing import Any

from anyml._spec import Registry, Spec
from anyml._validate import positive_int
from anyml.backend import Array, namespace_of

__all__ = [
    "METRICS",
    "Accuracy",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "TopKAccuracy",
    "get_metric",
]


class Metric(Spec):
    """Base class of the metrics.

    Subclasses define :meth:`__call__` (the batch sum of the per-example score) and :attr:`name`
    (the key in the logs and the history).
    """

    #: Whether a larger value is better (what callbacks watching this metric assume).
    higher_is_better = True

    @property
    def name(self) -> str:
        """The key of this metric in ``fit``'s history (``val_`` is prepended for validation)."""
        raise NotImplementedError

    def __call__(self, y: Array, out: Array) -> Array:
        """The sum over the batch of the per-example score, a 0-d array of ``out``'s namespace."""
        raise NotImplementedError


METRICS: Registry[Metric] = Registry("metric", Metric)


def _labels(xp: Any, y: Array, out: Array) -> Array:
    """Class indices from integer labels or from one-hot (or probability) rows."""
    return y if xp.isdtype(y.dtype, "integral") else xp.argmax(y, axis=-1)


def _per_example(pred_shape: tuple[int, ...]) -> int:
    """How many predictions each example makes (``n_t`` for an output ``(n_ex, n_t, classes)``)."""
    count = 1
    for dim in pred_shape[1:]:
        count *= int(dim)
    return count


class Accuracy(Metric):
    r"""The fraction of examples whose argmax output is the class, :math:`[\arg\max_c \hat y_c = y]`.

    ``y`` holds class indices or one-hot rows; an output of shape ``(n_ex, n_t, n_classes)`` scores
    the mean over its ``n_t`` predictions per example.
    """

    _spec_fields = ()

    @property
    def name(self) -> str:
        return "accuracy"

    def __call__(self, y: Array, out: Array) -> Array:
        xp = namespace_of(out)
        pred = xp.argmax(out, axis=-1)
        hits = xp.sum(xp.astype(pred == _labels(xp, y, out), out.dtype))
        per = _per_example(tuple(pred.shape))
        return xp.asarray(hits if per == 1 else hits / per)


class TopKAccuracy(Metric):
    r"""The fraction of examples whose class is among the ``k`` largest outputs.

    Parameters
    ----------
    k : int
        How many of the highest-scoring classes count as a hit; ``k=1`` is :class:`Accuracy`.
        Default 5.

    Notes
    -----
    The class :math:`c` of an example is a hit when fewer than :math:`k` outputs exceed
    :math:`\hat y_c` (ties count in the example's favour).
    """

    _spec_fields = ("k",)

    def __init__(self, k: int = 5) -> None:
        self.k = positive_int("TopKAccuracy", "k", k)

    @property
    def name(self) -> str:
        return f"top_{self.k}_accuracy"

    def __call__(self, y: Array, out: Array) -> Array:
        xp = namespace_of(out)
        labels = _labels(xp, y, out)
        n_classes = int(out.shape[-1])
        one_hot = xp.astype(labels[..., None] == xp.arange(n_classes, device=out.device), out.dtype)
        true_score = xp.sum(out * one_hot, axis=-1)
        above = xp.sum(xp.astype(out > true_score[..., None], out.dtype), axis=-1)
        hits = xp.sum(xp.astype(above < self.k, out.dtype))
        per = _per_example(tuple(true_score.shape))
        return xp.asarray(hits if per == 1 else hits / per)


class MeanAbsoluteError(Metric):
    r"""The mean absolute error per output value, :math:`\frac1m \sum_j |\hat y_j - y_j|`.

    The mean runs over the ``m`` values of one example; the logged value averages it over examples.
    """

    _spec_fields = ()
    higher_is_better = False

    @property
    def name(self) -> str:
        return "mae"

    def __call__(self, y: Array, out: Array) -> Array:
        xp = namespace_of(out)
        per = _per_example(tuple(out.shape))
        return xp.asarray(xp.sum(xp.abs(out - xp.astype(y, out.dtype))) / per)


class MeanSquaredError(Metric):
    r"""The mean squared error per output value, :math:`\frac1m \sum_j (\hat y_j - y_j)^2`.

    Unlike the ``SquaredError`` loss (half the *sum* over an example's values), this is the plain
    mean, as most libraries report it.
    """

    _spec_fields = ()
    higher_is_better = False

    @property
    def name(self) -> str:
        return "mse"

    def __call__(self, y: Array, out: Array) -> Array:
        xp = namespace_of(out)
        diff = out - xp.astype(y, out.dtype)
        return xp.asarray(xp.sum(diff * diff) / _per_example(tuple(out.shape)))


METRICS.register(Accuracy, "acc", "categorical_accuracy")
METRICS.register(TopKAccuracy, "top_k", "top_k_accuracy", "top_k_categorical_accuracy")
METRICS.register(MeanAbsoluteError, "mae", "mean_absolute_error")
METRICS.register(MeanSquaredError, "mse", "mean_squared_error")


def get_metric(spec: Any) -> Metric:
    """Build a metric from a name, a spec string, a dict ``{"id": name, ...}`` or a :class:`Metric`.

    Names match ignoring case and ``_``: ``"accuracy"``/``"acc"``, ``"top_k_accuracy"`` (``k=5``)
    or ``"TopKAccuracy(k=3)"``, ``"mae"``, ``"mse"``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the choices) or bad arguments.
    """
    return METRICS.get(spec)
