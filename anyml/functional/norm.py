r"""Batch and layer normalization: forward passes and their gradients.

Both normalize with a mean and a (biased) variance taken over some axes of the input, then scale and
shift:

.. math::

    \hat X = \frac{X - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad Y = \gamma \odot \hat X + \beta

Batch normalization takes :math:`\mu, \sigma^2` over every axis except the last (the features or
channels) and :math:`\gamma, \beta` have one value per feature; layer normalization takes them over every
axis except the first (the examples) and :math:`\gamma, \beta` have the shape of one example.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from anyml.backend import namespace_of

__all__ = [
    "NormCache",
    "batchnorm_backward",
    "batchnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
]

Array = Any


class NormCache(NamedTuple):
    """What the backward pass of a normalization needs.

    Attributes
    ----------
    X_hat : array
        The normalized input :math:`\\hat X`.
    scaler : array
        :math:`\\gamma`.
    inv_std : array
        :math:`1 / \\sqrt{\\sigma^2 + \\epsilon}`, with singleton axes where the statistics were reduced.
    stat_axes : tuple of int
        The axes the mean and variance were taken over.
    param_axes : tuple of int
        The axes :math:`\\gamma` and :math:`\\beta` are broadcast over (their gradients sum over them).
    mean, var : array
        The statistics used, shaped like ``inv_std``.
    batch_stats : bool
        Whether the statistics came from the input itself (so the gradient flows through them) or were
        given as constants (inference with running statistics).
    """

    X_hat: Array
    scaler: Array
    inv_std: Array
    stat_axes: tuple[int, ...]
    param_axes: tuple[int, ...]
    mean: Array
    var: Array
    batch_stats: bool


def _normalize(X: Array, scaler: Array, intercept: Array, epsilon: float, stat_axes: tuple[int, ...],
               param_axes: tuple[int, ...], mean: Array | None, var: Array | None,
               xp: Any) -> tuple[Array, NormCache]:
    batch_stats = mean is None
    if mean is None or var is None:
        mean = xp.mean(X, axis=stat_axes, keepdims=True)
        centred = X - mean
        var = xp.mean(centred * centred, axis=stat_axes, keepdims=True)
    else:
        centred = X - mean
    inv_std = 1.0 / xp.sqrt(var + epsilon)
    X_hat = centred * inv_std
    Y = scaler * X_hat + intercept
    return Y, NormCache(X_hat, scaler, inv_std, stat_axes, param_axes, mean, var, batch_stats)


def _normalize_backward(dY: Array, cache: NormCache, xp: Any) -> tuple[Array, Array, Array]:
    X_hat, scaler, inv_std, stat_axes, param_axes, _, _, batch_stats = cache
    d_scaler = xp.sum(dY * X_hat, axis=param_axes)
    d_intercept = xp.sum(dY, axis=param_axes)
    dX_hat = dY * scaler
    if batch_stats:
        # the mean and the variance depend on X too
        dX = inv_std * (dX_hat - xp.mean(dX_hat, axis=stat_axes, keepdims=True)
                        - X_hat * xp.mean(dX_hat * X_hat, axis=stat_axes, keepdims=True))
    else:
        dX = dX_hat * inv_std
    return dX, d_scaler, d_intercept


def batchnorm_forward(X: Array, scaler: Array, intercept: Array, epsilon: float = 1e-5,
                      running_mean: Array | None = None, running_var: Array | None = None,
                      xp: Any = None) -> tuple[Array, NormCache]:
    r"""Batch normalization over every axis of ``X`` but the last.

    Parameters
    ----------
    X : array of shape (n_ex, ..., n_in)
        ``(n_ex, n_in)`` for 1D inputs, ``(n_ex, in_rows, in_cols, in_ch)`` for images.
    scaler, intercept : arrays of shape (n_in,)
        :math:`\gamma` and :math:`\beta`.
    epsilon : float
        Added to the variance before the square root.
    running_mean, running_var : arrays of shape (n_in,), optional
        When both are given they replace the batch statistics (inference); otherwise the mean and the
        biased variance (divided by the number of values, not one less) of the batch are used.

    Returns
    -------
    Y : array shaped like X
    cache : NormCache
        Its ``mean`` and ``var`` (with singleton axes) are the statistics used, for running averages.

    Notes
    -----
    With :math:`N` values per feature, the gradient through batch statistics is

    .. math::

        \frac{\partial L}{\partial X} = \frac{1}{\sqrt{\sigma^2 + \epsilon}} \Big( g
        - \overline{g} - \hat X \, \overline{g \odot \hat X} \Big), \qquad
        g = \gamma \odot \frac{\partial L}{\partial Y}

    where the bars are means over the same :math:`N` values; with running statistics it is simply
    :math:`g / \sqrt{\sigma^2 + \epsilon}`.
    """
    xp = namespace_of(X) if xp is None else xp
    axes = tuple(range(X.ndim - 1))
    if running_mean is None or running_var is None:
        return _normalize(X, scaler, intercept, epsilon, axes, axes, None, None, xp)
    return _normalize(X, scaler, intercept, epsilon, axes, axes, running_mean, running_var, xp)


def batchnorm_backward(dY: Array, cache: NormCache, xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`batchnorm_forward`.

    .. math::

        \frac{\partial L}{\partial \gamma} = \sum \frac{\partial L}{\partial Y} \odot \hat X, \qquad
        \frac{\partial L}{\partial \beta} = \sum \frac{\partial L}{\partial Y}

    summed over every axis but the last; :math:`\partial L / \partial X` as in the forward's Notes.

    Returns
    -------
    dX, d_scaler, d_intercept : arrays shaped like X, scaler and intercept
    """
    xp = namespace_of(dY) if xp is None else xp
    return _normalize_backward(dY, cache, xp)


def layernorm_forward(X: Array, scaler: Array, intercept: Array, epsilon: float = 1e-5,
                      xp: Any = None) -> tuple[Array, NormCache]:
    r"""Layer normalization of each example over all of its values.

    Parameters
    ----------
    X : array of shape (n_ex, ...)
        ``(n_ex, n_in)`` or ``(n_ex, in_rows, in_cols, in_ch)``.
    scaler, intercept : arrays of shape ``X.shape[1:]``
        :math:`\gamma` and :math:`\beta`, applied elementwise.
    epsilon : float
        Added to the variance before the square root.

    Returns
    -------
    Y : array shaped like X
    cache : NormCache

    Notes
    -----
    The mean and the biased variance are taken over the :math:`N` values of one example; the gradient
    wrt. ``X`` has the same form as batch normalization's (see :func:`batchnorm_forward`) with the
    means taken per example, and the parameter gradients sum over the examples.
    """
    xp = namespace_of(X) if xp is None else xp
    return _normalize(X, scaler, intercept, epsilon, tuple(range(1, X.ndim)), (0,), None, None, xp)


def layernorm_backward(dY: Array, cache: NormCache, xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`layernorm_forward`.

    .. math::

        \frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial Y_i} \odot \hat X_i,
        \qquad \frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial Y_i}

    Returns
    -------
    dX, d_scaler, d_intercept : arrays shaped like X, scaler and intercept
    """
    xp = namespace_of(dY) if xp is None else xp
    return _normalize_backward(dY, cache, xp)
