"""Special functions written against the Python Array API standard.

The standard has no error function, so :func:`erf` and :func:`erfc` are built here from
elementwise operations it does define (``exp``, ``where``, arithmetic). They run unchanged on every
backend and keep the input's dtype and device.
"""

from __future__ import annotations

import math
from typing import Any

from anyml.backend import Array, namespace_of, replaceable

__all__ = ["erf", "erfc"]


# |x| below _SPLIT uses the power series of erf, at or above it the continued fraction of erfc.
_SPLIT = 2.5
# Beyond this erfc(x) is below the smallest float64 subnormal; clamping keeps x*x finite.
_CLAMP = 30.0
# Fixed numbers of terms, chosen per dtype from measurements against ``math.erf``/``math.erfc``.
_SERIES_TERMS = {"float32": 26, "float64": 40}
_FRACTION_TERMS = {"float32": 14, "float64": 40}
# exp(-x^2) is split as exp(-h^2) * exp(-(x - h)(x + h)) with h = x rounded down to 1/_SPLIT_SCALE:
# h^2 is then exact (h has at most half the mantissa bits), so the rounding of x^2 does not cost
# ~x^2 ulp of relative accuracy in the tails.
_SPLIT_SCALE = {"float32": 64.0, "float64": 1048576.0}
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_ONE_OVER_SQRT_PI = 1.0 / math.sqrt(math.pi)


def _precision(x: Array, xp: Any) -> str:
    if not xp.isdtype(x.dtype, "real floating"):
        msg = f"erf: expected a real floating-point array, got dtype {x.dtype}"
        raise TypeError(msg)
    return "float64" if x.dtype == xp.float64 else "float32"


def _exp_neg_square(x: Array, xp: Any, prec: str) -> Array:
    """``exp(-x**2)`` without the error that rounding ``x**2`` would bring for ``|x|`` up to 30."""
    scale = _SPLIT_SCALE[prec]
    h = xp.floor(xp.abs(x) * scale) * (1.0 / scale)
    a = xp.abs(x)
    return xp.exp(-(h * h)) * xp.exp(-((a - h) * (a + h)))


def _erf_series(x: Array, xp: Any, prec: str) -> Array:
    """erf by its all-positive power series; meant for small ``|x|``."""
    two_x2 = 2.0 * (x * x)
    acc = xp.ones_like(x)
    for k in range(_SERIES_TERMS[prec], 0, -1):
        # Horner form of sum_k (2 x^2)^k / (3 * 5 * ... * (2k + 1))
        acc = 1.0 + acc * two_x2 * (1.0 / (2 * k + 1))
    return _TWO_OVER_SQRT_PI * _exp_neg_square(x, xp, prec) * x * acc


def _erfc_fraction(a: Array, xp: Any, prec: str) -> Array:
    """erfc of ``a >= _SPLIT`` by its continued fraction, evaluated from the tail upwards."""
    t = a
    for k in range(_FRACTION_TERMS[prec], 0, -1):
        t = a + (0.5 * k) / t
    return _ONE_OVER_SQRT_PI * _exp_neg_square(a, xp, prec) / t


def _both(x: Array, xp: Any | None) -> tuple[Array, Array, Array, Any]:
    """The masks and branch values shared by :func:`erf` and :func:`erfc`."""
    xp = namespace_of(x) if xp is None else xp
    prec = _precision(x, xp)
    ax = xp.abs(x)
    small = ax < _SPLIT
    # Each branch sees only inputs it handles well; the other entries get a harmless stand-in, so
    # neither branch can overflow whatever x holds.
    xs = xp.where(small, x, xp.zeros_like(x))
    xl = xp.minimum(xp.where(small, xp.full_like(x, _SPLIT), ax), _CLAMP)  # no clip: it syncs on CuPy
    series = _erf_series(xs, xp, prec)
    tail = _erfc_fraction(xl, xp, prec)
    return small, series, tail, xp


@replaceable
def erf(x: Array, xp: Any = None) -> Array:
    r"""The error function, elementwise, in the dtype and on the device of ``x``.

    Parameters
    ----------
    x : array
        Real floating-point input of any shape.
    xp : namespace, optional
        The Array API namespace of ``x``; looked up when omitted.

    Returns
    -------
    array
        :math:`\operatorname{erf}(x)`, same shape, dtype and device as ``x``.

    Notes
    -----
    .. math::

        \operatorname{erf}(x) = \frac{2}{\sqrt{\pi}} \int_0^x e^{-t^2}\,dt .

    For :math:`|x| < 2.5` the series with positive terms only (so nothing cancels)

    .. math::

        \operatorname{erf}(x) = \frac{2}{\sqrt{\pi}} e^{-x^2}
            \sum_{n \ge 0} \frac{2^n x^{2n+1}}{1 \cdot 3 \cdots (2n+1)}

    is summed to a fixed number of terms. For larger :math:`|x|`,
    :math:`\operatorname{erf}(x) = \operatorname{sign}(x)(1 - \operatorname{erfc}(|x|))` with
    :math:`\operatorname{erfc}` from the continued fraction

    .. math::

        \operatorname{erfc}(a) = \frac{e^{-a^2}}{\sqrt{\pi}}\;
            \cfrac{1}{a + \cfrac{1/2}{a + \cfrac{1}{a + \cfrac{3/2}{a + \cdots}}}} .

    Both branches are computed for every element and joined with ``where``. :math:`e^{-x^2}` is
    evaluated as :math:`e^{-h^2} e^{-(x-h)(x+h)}` with :math:`h` a short-mantissa copy of
    :math:`|x|`, so that rounding :math:`x^2` does not cost accuracy for large :math:`|x|`. Measured
    against :func:`math.erf` on a dense grid, the relative error stays below ``1.2e-15`` in float64
    and ``1e-6`` (about 8 ulp, from the rounding inside the sum) in float32, over the whole real
    line.

    Examples
    --------
    >>> import numpy as np
    >>> from anyml.functional.special import erf
    >>> float(erf(np.asarray(0.5)))  # doctest: +ELLIPSIS
    0.5204998778130...
    """
    small, series, tail, xp = _both(x, xp)
    large = 1.0 - tail
    return xp.where(small, series, xp.where(x < 0, -large, large))


@replaceable
def erfc(x: Array, xp: Any = None) -> Array:
    r"""The complementary error function :math:`1 - \operatorname{erf}(x)`, elementwise.

    Parameters
    ----------
    x : array
        Real floating-point input of any shape.
    xp : namespace, optional
        The Array API namespace of ``x``; looked up when omitted.

    Returns
    -------
    array
        :math:`\operatorname{erfc}(x)`, same shape, dtype and device as ``x``.

    Notes
    -----
    Computed as in :func:`erf`. For :math:`x \ge 2.5` the continued fraction gives erfc directly,
    with full relative accuracy deep into the tail; :math:`\operatorname{erfc}(-a) = 2 -
    \operatorname{erfc}(a)` covers :math:`x \le -2.5`, and :math:`1 - \operatorname{erf}(x)` the
    middle. The absolute error is a few ulp everywhere; the relative error is too, except on
    :math:`0 < x < 2.5`, where the subtraction loses up to
    :math:`\log_{10}(1/\operatorname{erfc}(x))` digits (about ``1e-12`` in float64 and ``1e-3`` in
    float32 just below ``x = 2.5``), as ``1 - erf`` does in any library.
    """
    small, series, tail, xp = _both(x, xp)
    return xp.where(small, 1.0 - series, xp.where(x < 0, 2.0 - tail, tail))
