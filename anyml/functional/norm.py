r"""Batch and layer normalization: forward passes and their gradients.

Both normalize with a mean and a (biased) variance taken over some axes of the input, then scale and
shift:

.. math::

    \hat X = \frac{X - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad Y = \gamma \odot \hat X + \beta

Batch normalization takes :math:`\mu, \sigma^2` over every axis except the last (the features or
channels) and :math:`\gamma, \beta` have one value per feature; layer normalization takes them over every
axis except the first (the examples) and :math:`\gamma, \beta` have the shape of one example.

The kernels work on a 2-D view of the input (a free reshape): batch normalization on ``(values,
features)`` folded into long rows, layer normalization on ``(examples, values)``. Sums over the long
axis are matrix products with a vector of ones, faster than reductions; the gradient formulas are
arranged so that each pass over the data does one elementwise operation, in place where the array
is one the kernel made itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from anyml.backend import Array, namespace_of, replaceable

__all__ = [
    "NormCache",
    "batchnorm_backward",
    "batchnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
]

#: Sums arrays over the parts of a batch split across workers, in place, and returns them.
Reduce = Callable[[list[Array]], list[Array]]


class NormCache(NamedTuple):
    """What the backward pass of a normalization needs.

    Attributes
    ----------
    centred : array
        The centred input :math:`X - \\mu` (shaped like X); :math:`\\hat X` is ``centred * inv_std``.
    scaler : array
        :math:`\\gamma`.
    inv_std : array
        :math:`1 / \\sqrt{\\sigma^2 + \\epsilon}`, with singleton axes where the statistics were reduced.
    mean, var : array
        The statistics used (with singleton axes when computed from the batch).
    batch_stats : bool
        Whether the statistics came from the input itself (so the gradient flows through them) or were
        given as constants (inference with running statistics).
    inv_count : array or None
        With a ``reduce``: one over the number of values per feature over all the parts, shape
        ``(1,)`` (kept on the device).
    reduce : callable or None
        The reduction the statistics were summed with (the backward pass sums its means with it).
    """

    centred: Array
    scaler: Array
    inv_std: Array
    mean: Array
    var: Array
    batch_stats: bool
    inv_count: Array | None = None
    reduce: Reduce | None = None


#: Row length of the 2-D layouts where a per-feature row is broadcast: NumPy broadcasts along rows of
#: fewer than about 8192 values at twice the cost of a plain elementwise pass.
_ROW_TARGET = 16384
#: Rows at least this long get their sums of squares by ``vecdot`` (no temporary); shorter ones by a
#: square and a matrix product (a dot product per short row is slow).
_VECDOT_MIN = 64


@functools.lru_cache(maxsize=256)
def _fold(n_rows: int, n_ch: int) -> int:
    """The largest divisor ``k`` of ``n_rows`` with ``k * n_ch <= _ROW_TARGET`` (at least 1): the
    ``(n_rows, n_ch)`` matrix is viewed as ``(n_rows / k, k * n_ch)``, each row holding ``k`` rows."""
    for k in range(min(n_rows, max(_ROW_TARGET // max(n_ch, 1), 1)), 1, -1):
        if n_rows % k == 0:
            return k
    return 1


def _ones(shape: tuple[int, ...], like: Array, xp: Any) -> Array:
    """A read-only array of ones shaped ``shape`` like ``like`` (dtype, device), made once per
    namespace, dtype, device and shape and then reused (no allocation, no kernel)."""
    try:
        return _cached_ones(shape, like.dtype, like.device, xp)
    except TypeError:  # an unhashable dtype or device: no cache
        return xp.ones(shape, dtype=like.dtype, device=like.device)


@functools.lru_cache(maxsize=64)
def _cached_ones(shape: tuple[int, ...], dtype: Any, device: Any, xp: Any) -> Array:
    return xp.ones(shape, dtype=dtype, device=device)


def _reshape(x: Array, shape: tuple[int, ...], xp: Any) -> Array:
    """``xp.reshape(x, shape)``, skipped when ``x`` has that shape already (a namespace call costs
    more than the comparison at small sizes)."""
    return x if tuple(x.shape) == shape else xp.reshape(x, shape)


def _tile(v: Array, k: int, xp: Any) -> Array:
    """The per-feature vector ``v`` repeated ``k`` times: a row matching the folded layout."""
    return v if k == 1 else xp.tile(v, (k,))


def _reciprocal(n: int) -> float:
    """``1 / n``, NaN for an empty axis (the mean of nothing)."""
    return 1.0 / n if n else float("nan")


# --------------------------------------------------------------------------- batch normalization
def _feature_sums(A: Array, k: int, n_ch: int, xp: Any,
                  ones: tuple[Array, Array] | None = None) -> Array:
    """Per-feature sums of the folded ``(rows, k * n_ch)`` matrix ``A``, shape ``(n_ch,)``; ``ones``
    are the vectors of ones of the two products, when the caller made them already (see
    :func:`_sum_vectors`)."""
    first, second = _sum_vectors(A, k, xp) if ones is None else ones
    s = xp.matmul(first, A)
    if k > 1:
        s = xp.matmul(second, _reshape(s, (k, n_ch), xp))
    return _reshape(s, (n_ch,), xp)


def _sum_vectors(A: Array, k: int, xp: Any) -> tuple[Array, Array]:
    """The vectors of ones :func:`_feature_sums` multiplies the folded matrix ``A`` with (made once
    for the several sums of one call)."""
    first = _ones((1, int(A.shape[0])), A, xp)
    return first, (_ones((1, k), A, xp) if k > 1 else first)


def _batch_layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(n, k, n_ch)``: the number of values per feature, the fold factor and the feature count."""
    n_ch = int(shape[-1])
    n = math.prod(shape[:-1])
    return n, _fold(n, n_ch), n_ch


def _inv_sqrt(v: Array, epsilon: float) -> Array:
    """:math:`1 / \\sqrt{v + \\epsilon}` (two kernels)."""
    return (v + epsilon) ** -0.5


def _batchnorm(X: Array, scaler: Array, intercept: Array, epsilon: float, mean: Array | None,
               var: Array | None, xp: Any, reduce: Reduce | None = None) -> tuple[Array, NormCache]:
    n, k, n_ch = _batch_layout(tuple(X.shape))
    stat_shape = (1,) * (X.ndim - 1) + (n_ch,)
    X2 = _reshape(X, (n // k, k * n_ch), xp)
    batch_stats = mean is None or var is None
    inv_count = None
    if batch_stats and reduce is not None:
        # pass 1: the sums and the count over every part, then pass 2: the centred squares
        part = xp.concat([_feature_sums(X2, k, n_ch, xp),
                          xp.full((1,), float(n), dtype=X.dtype, device=X.device)])
        part = reduce([part])[0]
        inv_count = 1.0 / part[n_ch:]
        mu = part[:n_ch] * inv_count
        centred = X2 - _tile(mu, k, xp)
        sigma2 = reduce([_feature_sums(centred * centred, k, n_ch, xp)])[0] * inv_count
        mean, var = _reshape(mu, stat_shape, xp), _reshape(sigma2, stat_shape, xp)
    elif mean is None or var is None:
        # two passes (the mean, then the mean of the centred squares), never E[x^2] - E[x]^2
        ones = _sum_vectors(X2, k, xp)
        mu = _feature_sums(X2, k, n_ch, xp, ones) * _reciprocal(n)
        centred = X2 - _tile(mu, k, xp)
        sq = centred * centred
        sigma2 = _feature_sums(sq, k, n_ch, xp, ones) * _reciprocal(n)
        del sq
        mean, var = _reshape(mu, stat_shape, xp), _reshape(sigma2, stat_shape, xp)
    else:
        centred = X2 - _tile(_reshape(mean, (n_ch,), xp), k, xp)
        sigma2 = _reshape(var, (n_ch,), xp)
    inv_std = _inv_sqrt(sigma2, epsilon)
    Y = centred * _tile(scaler * inv_std, k, xp)
    Y += _tile(intercept, k, xp)
    cache = NormCache(_reshape(centred, X.shape, xp), scaler, _reshape(inv_std, stat_shape, xp),
                      mean, var, batch_stats, inv_count, reduce if inv_count is not None else None)
    return _reshape(Y, X.shape, xp), cache


def _batchnorm_backward(dY: Array, cache: NormCache, xp: Any,
                        consume_cache: bool) -> tuple[Array, Array, Array]:
    n, k, n_ch = _batch_layout(tuple(dY.shape))
    shape = (n // k, k * n_ch)
    dY2, centred = _reshape(dY, shape, xp), _reshape(cache.centred, shape, xp)
    inv_std = _reshape(cache.inv_std, (n_ch,), xp)
    gain = cache.scaler * inv_std  # gamma / sqrt(var + eps)
    ones = _sum_vectors(dY2, k, xp)
    t = dY2 * centred
    d_scaler = _feature_sums(t, k, n_ch, xp, ones) * inv_std  # sum(dY * X_hat)
    del t
    d_intercept = _feature_sums(dY2, k, n_ch, xp, ones)
    if not cache.batch_stats:
        return _reshape(dY2 * _tile(gain, k, xp), dY.shape, xp), d_scaler, d_intercept
    # dX = gain * (dY - mean(dY) - X_hat * mean(dY * X_hat)), the means per feature and
    # X_hat = centred * inv_std: dY * gain - centred * b - c with per-feature b and c
    if cache.reduce is not None and cache.inv_count is not None:
        # the means over every part; the parameter gradients stay this part's own sums
        sums = cache.reduce([xp.concat([d_scaler, d_intercept])])[0] * cache.inv_count
        b, c = sums[:n_ch] * (gain * inv_std), sums[n_ch:] * gain
    else:
        b = (d_scaler * (gain * inv_std)) * _reciprocal(n)
        c = (d_intercept * gain) * _reciprocal(n)
    dX = dY2 * _tile(gain, k, xp)
    b = _tile(b, k, xp)
    if consume_cache:  # the cache is spent: scale its centred input in place
        centred *= b
        dX -= centred
    else:
        dX -= centred * b
    del b
    dX -= _tile(c, k, xp)
    return _reshape(dX, dY.shape, xp), d_scaler, d_intercept


# --------------------------------------------------------------------------- layer normalization
# Here the per-example statistics are broadcast along rows of one example's values, which NumPy runs
# at full speed only inside its backend's ``row_broadcasts`` context (the layers enter it).
def _layernorm(X: Array, scaler: Array, intercept: Array, epsilon: float,
               xp: Any) -> tuple[Array, NormCache]:
    n_ex, size = int(X.shape[0]), math.prod(X.shape[1:])
    stat_shape = (n_ex,) + (1,) * (X.ndim - 1)
    X2 = _reshape(X, (n_ex, size), xp)
    ones = _ones((size, 1), X, xp)
    mu = xp.matmul(X2, ones) * _reciprocal(size)
    centred = X2 - mu
    if size >= _VECDOT_MIN:
        sigma2 = xp.reshape(xp.vecdot(centred, centred, axis=-1), (n_ex, 1)) * _reciprocal(size)
    else:
        sigma2 = xp.matmul(centred * centred, ones) * _reciprocal(size)
    inv_std = _inv_sqrt(sigma2, epsilon)
    Y = inv_std * _reshape(scaler, (size,), xp)  # gamma / sigma, then in place (one array less)
    Y *= centred
    Y += _reshape(intercept, (size,), xp)
    cache = NormCache(_reshape(centred, X.shape, xp), scaler, _reshape(inv_std, stat_shape, xp),
                      _reshape(mu, stat_shape, xp), _reshape(sigma2, stat_shape, xp), True)
    return _reshape(Y, X.shape, xp), cache


def _layernorm_backward(dY: Array, cache: NormCache, xp: Any,
                        consume_cache: bool) -> tuple[Array, Array, Array]:
    n_ex, size = int(dY.shape[0]), math.prod(dY.shape[1:])
    dY2 = _reshape(dY, (n_ex, size), xp)
    centred = _reshape(cache.centred, (n_ex, size), xp)
    inv_std = _reshape(cache.inv_std, (n_ex, 1), xp)
    t = dY2 * centred
    # parameter gradients: sums over the examples, X_hat = centred * inv_std
    scaler_shape = tuple(cache.scaler.shape)
    d_scaler = _reshape(xp.matmul(xp.reshape(inv_std, (n_ex,)), t), scaler_shape, xp)
    d_intercept = _reshape(xp.matmul(_ones((n_ex,), dY, xp), dY2), scaler_shape, xp)
    # per example, with g = gamma * dY: mean(g) and mean(g * centred), as products with gamma / N
    gamma_n = _reshape(cache.scaler, (size, 1), xp) * _reciprocal(size)
    g_mean = xp.matmul(dY2, gamma_n)
    gc_mean = xp.matmul(t, gamma_n)
    del t
    # dX = inv_std * (g - mean(g) - X_hat * mean(g * X_hat))
    #    = (g - centred * inv_std^2 * mean(g * centred) - mean(g)) * inv_std
    dX = dY2 * _reshape(cache.scaler, (size,), xp)
    a = (inv_std * inv_std) * gc_mean
    if consume_cache:  # the cache is spent: scale its centred input in place
        centred *= a
        dX -= centred
    else:
        dX -= centred * a
    dX -= g_mean
    dX *= inv_std
    return _reshape(dX, dY.shape, xp), d_scaler, d_intercept


@replaceable
def batchnorm_forward(X: Array, scaler: Array, intercept: Array, epsilon: float = 1e-5,
                      running_mean: Array | None = None, running_var: Array | None = None,
                      xp: Any = None, reduce: Reduce | None = None) -> tuple[Array, NormCache]:
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
    reduce : callable, optional
        For a batch split across workers (synchronized batch normalization): a function that sums a
        list of arrays over the workers in place and returns them. The statistics are then those of
        the whole batch, in two passes (the sums and the count, then the sums of squared deviations
        from the global mean: never :math:`E[x^2] - E[x]^2`, which cancels catastrophically), and
        the backward pass sums its two per-feature means the same way. Every worker must call the
        forward and backward passes (with an empty part if it has no values).

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
    return _batchnorm(X, scaler, intercept, epsilon, running_mean, running_var, xp, reduce)


@replaceable
def batchnorm_backward(dY: Array, cache: NormCache, xp: Any = None, *,
                       consume_cache: bool = False) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`batchnorm_forward`.

    .. math::

        \frac{\partial L}{\partial \gamma} = \sum \frac{\partial L}{\partial Y} \odot \hat X, \qquad
        \frac{\partial L}{\partial \beta} = \sum \frac{\partial L}{\partial Y}

    summed over every axis but the last; :math:`\partial L / \partial X` as in the forward's Notes.

    Parameters
    ----------
    dY : array shaped like the forward's ``Y``
    cache : NormCache
        From :func:`batchnorm_forward`.
    consume_cache : bool
        Let the backward overwrite ``cache.centred`` as scratch, which saves a temporary the size of
        ``X``; the cache must not be used again. Default ``False``.

    Returns
    -------
    dX, d_scaler, d_intercept : arrays shaped like X, scaler and intercept
    """
    xp = namespace_of(dY) if xp is None else xp
    return _batchnorm_backward(dY, cache, xp, consume_cache)


@replaceable
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
    return _layernorm(X, scaler, intercept, epsilon, xp)


@replaceable
def layernorm_backward(dY: Array, cache: NormCache, xp: Any = None, *,
                       consume_cache: bool = False) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`layernorm_forward`.

    .. math::

        \frac{\partial L}{\partial \gamma} = \sum_i \frac{\partial L}{\partial Y_i} \odot \hat X_i,
        \qquad \frac{\partial L}{\partial \beta} = \sum_i \frac{\partial L}{\partial Y_i}

    Parameters
    ----------
    dY : array shaped like the forward's ``Y``
    cache : NormCache
        From :func:`layernorm_forward`.
    consume_cache : bool
        Let the backward overwrite ``cache.centred`` as scratch, which saves a temporary the size of
        ``X``; the cache must not be used again. Default ``False``.

    Returns
    -------
    dX, d_scaler, d_intercept : arrays shaped like X, scaler and intercept
    """
    xp = namespace_of(dY) if xp is None else xp
    return _layernorm_backward(dY, cache, xp, consume_cache)
