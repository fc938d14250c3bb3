"""Weight initializers: draw a layer's starting weights on the host.

Initial weights are drawn with NumPy's PCG64 generator (the :attr:`anyml.Backend.host_rng` of the
layer's backend) as float64 host arrays; the layer then copies them to its backend and dtype. One
seed therefore gives the same starting model on NumPy, CuPy, PyTorch and array-api-strict.

Names and defaults follow numpy-ml's ``neural_nets.initializers``; an initializer is also built from
a string such as ``"glorot_uniform"`` or ``"TruncatedNormal(mean=0.0, std=0.02)"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from anyml._spec import Registry, Spec
from anyml._validate import is_integer, real
from anyml.activations import calc_glorot_gain

__all__ = [
    "INITIALIZERS",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Initializer",
    "StdNormal",
    "TruncatedNormal",
    "calc_fan",
    "get_initializer",
    "truncated_normal",
]


def calc_fan(shape: Sequence[int]) -> tuple[int, int]:
    r"""The fan-in and fan-out of a weight array of shape ``shape``.

    Parameters
    ----------
    shape : sequence of int
        ``(n,)`` for a vector, ``(n_in, n_out)`` for a dense layer, ``(kw, in_ch, out_ch)`` for a
        1-D convolution and ``(kr, kc, in_ch, out_ch)`` for a 2-D one (any number of leading kernel
        dimensions is accepted).

    Returns
    -------
    fan_in, fan_out : int
        For a kernel, with :math:`r` the product of the kernel dimensions (the receptive field),
        :math:`\text{fan}_\text{in} = r \cdot \text{in\_ch}` and
        :math:`\text{fan}_\text{out} = r \cdot \text{out\_ch}`. A vector has both equal to its length.

    Raises
    ------
    ValueError
        For an empty shape or a dimension that is not a positive integer.
    """
    dims = tuple(shape)
    if not dims or not all(is_integer(d) and d >= 1 for d in dims):
        msg = f"calc_fan: shape must be a non-empty tuple of positive integers, got {shape!r}"
        raise ValueError(msg)
    if len(dims) == 1:
        return int(dims[0]), int(dims[0])
    receptive = math.prod(int(d) for d in dims[:-2])
    return int(dims[-2]) * receptive, int(dims[-1]) * receptive


def truncated_normal(mean: float, std: float, shape: Sequence[int],
                     rng: np.random.Generator) -> np.ndarray:
    r"""Normal samples with every value beyond two standard deviations redrawn.

    Parameters
    ----------
    mean, std : float
        The mean and standard deviation of the normal before truncation.
    shape : sequence of int
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float64 samples in :math:`(\mu - 2\sigma, \mu + 2\sigma)`.

    Notes
    -----
    Truncation shrinks the standard deviation to about :math:`0.8796\,\sigma`.
    """
    out = rng.normal(mean, std, size=tuple(shape))
    outside = np.abs(out - mean) >= 2.0 * std
    while outside.any():
        out[outside] = rng.normal(mean, std, size=int(outside.sum()))
        outside = np.abs(out - mean) >= 2.0 * std
    return out


class Initializer(Spec):
    """Base class of the initializers: ``init(shape, rng)`` returns a float64 NumPy array."""

    def __call__(self, shape: Sequence[int], rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw an array of ``shape``.

        Parameters
        ----------
        shape : sequence of int
            The weight shape; see :func:`calc_fan` for how its fans are read.
        rng : numpy.random.Generator, optional
            The host generator (normally the backend's ``host_rng``). ``None`` draws fresh entropy.

        Returns
        -------
        numpy.ndarray
            float64, of shape ``shape``.
        """
        fan_in, fan_out = calc_fan(shape)
        if rng is None:
            rng = np.random.default_rng()
        elif not isinstance(rng, np.random.Generator):
            msg = f"{self}: rng must be a numpy.random.Generator, got {type(rng).__name__}"
            raise TypeError(msg)
        out = self._draw(tuple(int(d) for d in shape), fan_in, fan_out, rng)
        return np.ascontiguousarray(out, dtype=np.float64)

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


INITIALIZERS: Registry[Initializer] = Registry("initializer", Initializer)


def _register(*aliases: str) -> Callable[[type[Initializer]], type[Initializer]]:
    def decorate(cls: type[Initializer]) -> type[Initializer]:
        return INITIALIZERS.register(cls, *aliases)

    return decorate


@_register("glorot_uniform", "xavier_uniform")
class GlorotUniform(Initializer):
    r"""Glorot (Xavier) uniform initialization.

    Parameters
    ----------
    gain : float
        Scales the bound; see :func:`anyml.activations.calc_glorot_gain`. Default 1.0.

    Notes
    -----
    .. math::

        W \sim U[-b, b], \qquad b = \text{gain}\sqrt{\frac{6}{\text{fan}_\text{in} +
        \text{fan}_\text{out}}},

    so that :math:`\operatorname{std} W = \text{gain}\sqrt{2/(\text{fan}_\text{in} +
    \text{fan}_\text{out})}`.
    """

    _spec_fields = ("gain",)

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = real("GlorotUniform", "gain", gain, low=0.0, low_open=True)

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        bound = self.gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=shape)


@_register("glorot_normal", "xavier_normal")
class GlorotNormal(Initializer):
    r"""Glorot (Xavier) normal initialization, truncated at two standard deviations.

    Parameters
    ----------
    gain : float
        Scales the standard deviation. Default 1.0.

    Notes
    -----
    .. math::

        W \sim \mathcal{N}_{[-2\sigma, 2\sigma]}(0, \sigma^2), \qquad
        \sigma = \text{gain}\sqrt{\frac{2}{\text{fan}_\text{in} + \text{fan}_\text{out}}}.

    As in numpy-ml, :math:`\sigma` is the scale before truncation; the samples' standard deviation is
    about :math:`0.88\sigma`.
    """

    _spec_fields = ("gain",)

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = real("GlorotNormal", "gain", gain, low=0.0, low_open=True)

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        std = self.gain * math.sqrt(2.0 / (fan_in + fan_out))
        return truncated_normal(0.0, std, shape, rng)


@_register("he_uniform", "kaiming_uniform")
class HeUniform(Initializer):
    r"""He (Kaiming) uniform initialization, for ReLU networks.

    Notes
    -----
    .. math::

        W \sim U[-b, b], \qquad b = \sqrt{\frac{6}{\text{fan}_\text{in}}}.
    """

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        bound = math.sqrt(6.0 / fan_in)
        return rng.uniform(-bound, bound, size=shape)


@_register("he_normal", "kaiming_normal")
class HeNormal(Initializer):
    r"""He (Kaiming) normal initialization, truncated at two standard deviations.

    Notes
    -----
    .. math::

        W \sim \mathcal{N}_{[-2\sigma, 2\sigma]}(0, \sigma^2), \qquad
        \sigma = \sqrt{\frac{2}{\text{fan}_\text{in}}}

    (:math:`\sigma` before truncation, as in numpy-ml).
    """

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        return truncated_normal(0.0, math.sqrt(2.0 / fan_in), shape, rng)


@_register("trunc_normal")
class TruncatedNormal(Initializer):
    r"""Normal samples redrawn until they lie within two standard deviations of the mean.

    Parameters
    ----------
    mean : float
        Default 0.0.
    std : float
        The standard deviation before truncation. Default 1.0.

    Notes
    -----
    :math:`W \sim \mathcal{N}(\mu, \sigma^2)` conditioned on :math:`|W - \mu| < 2\sigma`.
    """

    _spec_fields = ("mean", "std")

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = real("TruncatedNormal", "mean", mean)
        self.std = real("TruncatedNormal", "std", std, low=0.0, low_open=True)

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        return truncated_normal(self.mean, self.std, shape, rng)


@_register("std_normal")
class StdNormal(Initializer):
    r"""Standard normal samples, :math:`W \sim \mathcal{N}(0, 1)`."""

    def _draw(self, shape: tuple[int, ...], fan_in: int, fan_out: int,
              rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(size=shape)


_GLOROT = (GlorotUniform, GlorotNormal)


def get_initializer(spec: Any = None, act_fn: Any = None) -> Initializer:
    """Build an initializer from ``None``, a name or spec string, a dict or an :class:`Initializer`.

    Parameters
    ----------
    spec : None, str, dict or Initializer
        ``None`` means ``"glorot_uniform"``. Names ignore case and ``_`` (``"glorot_uniform"``,
        ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"trunc_normal"``,
        ``"std_normal"``). An Initializer is returned as is.
    act_fn : optional
        The activation that follows the layer (anything
        :func:`anyml.activations.get_activation` accepts). When the Glorot family is named without
        a ``gain``, the gain is :func:`anyml.activations.calc_glorot_gain` of it; an explicit gain
        or an Initializer object is left alone.

    Returns
    -------
    Initializer

    Examples
    --------
    >>> from anyml.initializers import get_initializer
    >>> get_initializer("glorot_uniform", act_fn="tanh")  # doctest: +ELLIPSIS
    GlorotUniform(gain=1.666...)
    >>> get_initializer("GlorotNormal(gain=2.0)", act_fn="tanh")
    GlorotNormal(gain=2.0)
    """
    if spec is None:
        spec = "glorot_uniform"
    if not isinstance(spec, str | Mapping):
        return INITIALIZERS.get(spec)
    name, params = INITIALIZERS.split(spec)
    if INITIALIZERS.lookup(name) in _GLOROT and "gain" not in params:
        params["gain"] = calc_glorot_gain(act_fn)
    return INITIALIZERS.build(name, params)
