"""Elementwise activation functions with their first and second derivatives.

Every activation is an :class:`Activation`: calling it (or :meth:`Activation.fn`) applies the
function, :meth:`Activation.grad` and :meth:`Activation.grad2` give the first and second derivatives
with respect to the input, elementwise, and :meth:`Activation.backward` chains an upstream gradient
through it. All of them work on arrays of any Array API library and return arrays of the input's
dtype and device.

The names, defaults and formulas follow numpy-ml's ``neural_nets.activations``. Activations are also
built from strings: ``get_activation("relu")``, ``get_activation("LeakyReLU(alpha=0.1)")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

from anyml._spec import Registry, Spec
from anyml.backend import Array, namespace_of, on_device_of
from anyml.functional.special import erfc

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "SELU",
    "Activation",
    "Affine",
    "Exponential",
    "HardSigmoid",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "SoftPlus",
    "Tanh",
    "calc_glorot_gain",
    "get_activation",
]



def _real(owner: str, name: str, value: Any) -> float:
    """``value`` as a float: a ``TypeError`` naming the argument for a non-number, a ``ValueError``
    for NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, Real):
        msg = f"{owner}: {name} must be a real number, got {value!r}"
        raise TypeError(msg)
    if not math.isfinite(float(value)):
        msg = f"{owner}: {name} must be a finite number, got {value!r}"
        raise ValueError(msg)
    return float(value)


class Activation(Spec):
    """Base class of the activations.

    Subclasses implement :meth:`fn`, :meth:`grad` and :meth:`grad2`; :meth:`backward` may be
    overridden where a cheaper form exists.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _on_z_device(cls)

    def __call__(self, z: Array) -> Array:
        """Apply the activation; the same as :meth:`fn`."""
        return self.fn(z)

    def fn(self, z: Array) -> Array:
        """The activation :math:`f(z)`, elementwise."""
        raise NotImplementedError

    def grad(self, z: Array) -> Array:
        r"""The first derivative :math:`\partial f / \partial z`, elementwise."""
        raise NotImplementedError

    def grad2(self, z: Array) -> Array:
        r"""The second derivative :math:`\partial^2 f / \partial z^2`, elementwise."""
        raise NotImplementedError

    def backward(self, z: Array, dy: Array) -> Array:
        r"""The gradient with respect to ``z`` given the gradient ``dy`` with respect to ``f(z)``.

        Returns :math:`dy \odot f'(z)`.
        """
        return dy * self.grad(z)


def _on_z_device(cls: type) -> None:
    """Run the public methods that ``cls`` defines on the device of their array ``z``."""
    for name in ("__call__", "fn", "grad", "grad2", "backward"):
        method = cls.__dict__.get(name)
        if method is not None and not getattr(method, "__anyml_activated__", False):
            setattr(cls, name, on_device_of(0)(method))


_on_z_device(Activation)
ACTIVATIONS: Registry[Activation] = Registry("activation", Activation)


def _register(*aliases: str) -> Callable[[type[Activation]], type[Activation]]:
    def decorate(cls: type[Activation]) -> type[Activation]:
        return ACTIVATIONS.register(cls, *aliases)

    return decorate


def _stable_sigmoid(z: Array, xp: Any) -> Array:
    """The logistic sigmoid from ``exp(-|z|)``, which never overflows."""
    e = xp.exp(-xp.abs(z))
    r = 1.0 / (1.0 + e)
    return xp.where(z >= 0, r, e * r)


@_register("logistic")
class Sigmoid(Activation):
    r"""The logistic sigmoid.

    Notes
    -----
    .. math::

        \sigma(z) = \frac{1}{1 + e^{-z}}, \qquad
        \sigma'(z) = \sigma(z)(1 - \sigma(z)), \qquad
        \sigma''(z) = \sigma'(z)(1 - 2\sigma(z)).

    It is evaluated as :math:`1/(1+e^{-|z|})` for :math:`z \ge 0` and
    :math:`e^{-|z|}/(1+e^{-|z|})` otherwise, so no exponential overflows.
    """

    #: Differentiated from its output by the recurrent kernels (:mod:`anyml.functional.activations`).
    output_derivative = "sigmoid"

    def fn(self, z: Array) -> Array:
        return _stable_sigmoid(z, namespace_of(z))

    def grad(self, z: Array) -> Array:
        s = self.fn(z)
        return s * (1.0 - s)

    def grad2(self, z: Array) -> Array:
        s = self.fn(z)
        return s * (1.0 - s) * (1.0 - 2.0 * s)


@_register()
class ReLU(Activation):
    r"""The rectified linear unit.

    Notes
    -----
    .. math::

        f(z) = \max(0, z), \qquad f'(z) = [z > 0], \qquad f''(z) = 0.

    The derivative at :math:`z = 0` is taken as 0 (as in numpy-ml and PyTorch). NaN passes through
    :math:`f` unchanged (as in PyTorch and every other activation here); its derivative there is 0,
    as PyTorch's.
    """

    def fn(self, z: Array) -> Array:
        xp = namespace_of(z)
        return xp.where(z < 0, xp.zeros_like(z), z)  # z > 0 would turn NaN into 0

    def grad(self, z: Array) -> Array:
        xp = namespace_of(z)
        return xp.astype(z > 0, z.dtype)

    def grad2(self, z: Array) -> Array:
        return namespace_of(z).zeros_like(z)

    def backward(self, z: Array, dy: Array) -> Array:
        xp = namespace_of(z)
        return xp.where(z > 0, dy, xp.zeros_like(dy))


@_register()
class LeakyReLU(Activation):
    r"""The leaky rectified linear unit.

    Parameters
    ----------
    alpha : float
        The slope for negative inputs. Default 0.3.

    Notes
    -----
    .. math::

        f(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0 \end{cases}, \qquad
        f'(z) = \begin{cases} 1 & z > 0 \\ \alpha & z \le 0 \end{cases}, \qquad f''(z) = 0.

    The derivative at :math:`z = 0` is taken as :math:`\alpha` (as in PyTorch; numpy-ml uses 1).
    """

    _spec_fields = ("alpha",)

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = _real("LeakyReLU", "alpha", alpha)

    def fn(self, z: Array) -> Array:
        xp = namespace_of(z)
        return xp.where(z > 0, z, self.alpha * z)

    def grad(self, z: Array) -> Array:
        xp = namespace_of(z)
        return xp.where(z > 0, xp.ones_like(z), xp.full_like(z, self.alpha))

    def grad2(self, z: Array) -> Array:
        return namespace_of(z).zeros_like(z)

    def backward(self, z: Array, dy: Array) -> Array:
        xp = namespace_of(z)
        return xp.where(z > 0, dy, self.alpha * dy)


@_register()
class GELU(Activation):
    r"""The Gaussian error linear unit.

    Parameters
    ----------
    approximate : bool
        Use the tanh approximation instead of the exact form. Default True (numpy-ml's default).

    Notes
    -----
    The exact form, with :math:`\Phi` and :math:`\phi` the standard normal CDF and density:

    .. math::

        f(z) = z\,\Phi(z), \qquad f'(z) = \Phi(z) + z\,\phi(z), \qquad
        f''(z) = \phi(z)\,(2 - z^2),

    where :math:`\Phi(z) = \tfrac12\operatorname{erfc}(-z/\sqrt2)` (erfc keeps the far negative tail
    accurate) and :math:`\phi(z) = e^{-z^2/2}/\sqrt{2\pi}`.

    The approximation, with :math:`c = \sqrt{2/\pi}`, :math:`u = c(z + 0.044715 z^3)`,
    :math:`t = \tanh u` and :math:`s = 1 - t^2`:

    .. math::

        f(z) = \tfrac12 z (1 + t), \qquad
        f'(z) = \tfrac12 (1 + t) + \tfrac12 z\, s\, u', \qquad
        f''(z) = s \left(u' - z\, t\, u'^2 + \tfrac12 z\, u''\right),

    with :math:`u' = c(1 + 3 \cdot 0.044715 z^2)` and :math:`u'' = 6 \cdot 0.044715\, c\, z`.
    """

    _spec_fields = ("approximate",)
    _C = math.sqrt(2.0 / math.pi)
    _K = 0.044715

    def __init__(self, approximate: bool = True) -> None:
        if not isinstance(approximate, bool):
            msg = f"GELU: approximate must be True or False, got {approximate!r}"
            raise TypeError(msg)
        self.approximate = approximate

    def _tanh_parts(self, z: Array) -> tuple[Array, Array, Array]:
        xp = namespace_of(z)
        z2 = z * z
        t = xp.tanh(self._C * (z + self._K * z2 * z))
        du = self._C * (1.0 + 3.0 * self._K * z2)
        return t, 1.0 - t * t, du

    @staticmethod
    def _cdf_pdf(z: Array) -> tuple[Array, Array]:
        xp = namespace_of(z)
        cdf = 0.5 * erfc(-z * (1.0 / math.sqrt(2.0)), xp)
        pdf = xp.exp(-0.5 * (z * z)) * (1.0 / math.sqrt(2.0 * math.pi))
        return cdf, pdf

    def fn(self, z: Array) -> Array:
        if self.approximate:
            xp = namespace_of(z)
            return 0.5 * z * (1.0 + xp.tanh(self._C * (z + self._K * z * z * z)))
        cdf, _ = self._cdf_pdf(z)
        return z * cdf

    def grad(self, z: Array) -> Array:
        if self.approximate:
            t, s, du = self._tanh_parts(z)
            return 0.5 * (1.0 + t) + 0.5 * z * s * du
        cdf, pdf = self._cdf_pdf(z)
        return cdf + z * pdf

    def grad2(self, z: Array) -> Array:
        if self.approximate:
            t, s, du = self._tanh_parts(z)
            d2u = (6.0 * self._K * self._C) * z
            return s * (du - z * t * du * du + 0.5 * z * d2u)
        _, pdf = self._cdf_pdf(z)
        return pdf * (2.0 - z * z)


@_register()
class Tanh(Activation):
    r"""The hyperbolic tangent.

    Notes
    -----
    .. math::

        f(z) = \tanh z, \qquad f'(z) = 1 - \tanh^2 z, \qquad
        f''(z) = -2 \tanh z \,(1 - \tanh^2 z).
    """

    #: Differentiated from its output by the recurrent kernels (:mod:`anyml.functional.activations`).
    output_derivative = "tanh"

    def fn(self, z: Array) -> Array:
        return namespace_of(z).tanh(z)

    def grad(self, z: Array) -> Array:
        t = self.fn(z)
        return 1.0 - t * t

    def grad2(self, z: Array) -> Array:
        t = self.fn(z)
        return -2.0 * t * (1.0 - t * t)


@_register()
class Affine(Activation):
    r"""An affine map.

    Parameters
    ----------
    slope : float
        Default 1.0.
    intercept : float
        Default 0.0.

    Notes
    -----
    .. math::

        f(z) = \text{slope}\cdot z + \text{intercept}, \qquad f'(z) = \text{slope}, \qquad
        f''(z) = 0.
    """

    _spec_fields: tuple[str, ...] = ("slope", "intercept")

    def __init__(self, slope: float = 1.0, intercept: float = 0.0) -> None:
        self.slope = _real("Affine", "slope", slope)
        self.intercept = _real("Affine", "intercept", intercept)

    def fn(self, z: Array) -> Array:
        return self.slope * z + self.intercept

    def grad(self, z: Array) -> Array:
        return namespace_of(z).full_like(z, self.slope)

    def grad2(self, z: Array) -> Array:
        return namespace_of(z).zeros_like(z)

    def backward(self, z: Array, dy: Array) -> Array:
        return dy * self.slope


@_register("linear")
class Identity(Affine):
    r"""The identity, :math:`f(z) = z` (an :class:`Affine` with slope 1 and intercept 0).

    Notes
    -----
    .. math::

        f(z) = z, \qquad f'(z) = 1, \qquad f''(z) = 0.

    :meth:`fn` returns ``z`` itself, not a copy, and :meth:`backward` returns ``dy`` itself.
    """

    _spec_fields = ()
    #: Differentiated from its output by the recurrent kernels (:mod:`anyml.functional.activations`).
    output_derivative = "identity"

    def __init__(self) -> None:
        super().__init__(1.0, 0.0)

    def fn(self, z: Array) -> Array:
        return z

    def grad(self, z: Array) -> Array:
        return namespace_of(z).ones_like(z)

    def backward(self, z: Array, dy: Array) -> Array:
        return dy


def _elu_parts(z: Array) -> tuple[Any, Array, Array]:
    """``(xp, z > 0, exp(min(z, 0)) - 1)``: the exponential never sees a positive argument."""
    xp = namespace_of(z)
    return xp, z > 0, xp.expm1(xp.minimum(z, 0.0))


@_register()
class ELU(Activation):
    r"""The exponential linear unit.

    Parameters
    ----------
    alpha : float
        The magnitude of the negative saturation. Default 1.0.

    Notes
    -----
    .. math::

        f(z) = \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases}, \quad
        f'(z) = \begin{cases} 1 & z > 0 \\ \alpha e^z & z \le 0 \end{cases}, \quad
        f''(z) = \begin{cases} 0 & z > 0 \\ \alpha e^z & z \le 0 \end{cases}.

    The exponential is taken of :math:`\min(z, 0)` only, so large positive inputs cannot overflow
    it.
    """

    _spec_fields = ("alpha",)

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _real("ELU", "alpha", alpha)

    def fn(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, z, self.alpha * em1)

    def grad(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, xp.ones_like(z), self.alpha * (em1 + 1.0))

    def grad2(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, xp.zeros_like(z), self.alpha * (em1 + 1.0))


@_register()
class Exponential(Activation):
    r"""The exponential, :math:`f(z) = f'(z) = f''(z) = e^z`.

    Notes
    -----
    Overflows to ``inf`` (with the library's overflow warning) for :math:`z` beyond about 88 in
    float32 and 709 in float64, like ``exp`` itself.
    """

    def fn(self, z: Array) -> Array:
        return namespace_of(z).exp(z)

    def grad(self, z: Array) -> Array:
        return self.fn(z)

    def grad2(self, z: Array) -> Array:
        return self.fn(z)


@_register()
class SELU(Activation):
    r"""The scaled exponential linear unit (self-normalizing networks).

    Notes
    -----
    :math:`f(z) = \lambda\,\mathrm{ELU}_\alpha(z)` with the fixed constants
    :math:`\alpha \approx 1.6733` and :math:`\lambda \approx 1.0507`:

    .. math::

        f(z) = \lambda \begin{cases} z & z > 0 \\ \alpha (e^z - 1) & z \le 0 \end{cases}, \quad
        f'(z) = \lambda \begin{cases} 1 & z > 0 \\ \alpha e^z & z \le 0 \end{cases}, \quad
        f''(z) = \lambda \begin{cases} 0 & z > 0 \\ \alpha e^z & z \le 0 \end{cases}.
    """

    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def fn(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, self.scale * z, (self.scale * self.alpha) * em1)

    def grad(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, xp.full_like(z, self.scale), (self.scale * self.alpha) * (em1 + 1.0))

    def grad2(self, z: Array) -> Array:
        xp, pos, em1 = _elu_parts(z)
        return xp.where(pos, xp.zeros_like(z), (self.scale * self.alpha) * (em1 + 1.0))


@_register()
class HardSigmoid(Activation):
    r"""A piecewise-linear stand-in for the sigmoid (numpy-ml's form).

    Notes
    -----
    .. math::

        f(z) = \operatorname{clip}(0.2 z + 0.5,\, 0,\, 1), \qquad
        f'(z) = \begin{cases} 0.2 & -2.5 < z < 2.5 \\ 0 & \text{otherwise} \end{cases}, \qquad
        f''(z) = 0.
    """

    def fn(self, z: Array) -> Array:
        xp = namespace_of(z)  # minimum/maximum, not clip: array-api-compat's clip syncs on CuPy
        return xp.minimum(xp.maximum(0.2 * z + 0.5, 0.0), 1.0)

    def grad(self, z: Array) -> Array:
        xp = namespace_of(z)
        inside = (z > -2.5) & (z < 2.5)
        return xp.where(inside, xp.full_like(z, 0.2), xp.zeros_like(z))

    def grad2(self, z: Array) -> Array:
        return namespace_of(z).zeros_like(z)


@_register()
class SoftPlus(Activation):
    r"""The softplus, a smooth ReLU.

    Notes
    -----
    .. math::

        f(z) = \log(1 + e^z), \qquad f'(z) = \sigma(z), \qquad
        f''(z) = \sigma(z)(1 - \sigma(z)),

    with :math:`f` evaluated as ``logaddexp(z, 0)``, which does not overflow.
    """

    def fn(self, z: Array) -> Array:
        xp = namespace_of(z)
        return xp.logaddexp(z, xp.zeros_like(z))

    def grad(self, z: Array) -> Array:
        return _stable_sigmoid(z, namespace_of(z))

    def grad2(self, z: Array) -> Array:
        s = _stable_sigmoid(z, namespace_of(z))
        return s * (1.0 - s)


def get_activation(spec: Any = None) -> Activation:
    """Build an activation from ``None``, a name or spec string, a dict or an :class:`Activation`.

    Parameters
    ----------
    spec : None, str, dict or Activation
        ``None`` gives :class:`Identity`. Names are matched ignoring case, spaces, ``-`` and ``_``
        (``"relu"``, ``"leaky relu"``, ``"LeakyReLU(alpha=0.1)"``, ``"linear"``, ``"hard sigmoid"``,
        ``"softplus"`` ...). A dict is ``{"id": name, **params}``. An Activation is returned as is.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        For an unknown name (the message lists the choices) or bad arguments.
    TypeError
        For an object of another kind.

    Examples
    --------
    >>> from anyml.activations import get_activation
    >>> get_activation("leaky relu")
    LeakyReLU(alpha=0.3)
    >>> get_activation(str(get_activation("ELU(alpha=0.5)")))
    ELU(alpha=0.5)
    """
    return ACTIVATIONS.get(spec, default=Identity)


def calc_glorot_gain(act: Any = None) -> float:
    r"""The gain that scales Glorot (Xavier) initialization for an activation.

    Parameters
    ----------
    act : anything :func:`get_activation` accepts

    Returns
    -------
    float
        :math:`5/3` for :class:`Tanh`, :math:`\sqrt2` for :class:`ReLU`,
        :math:`\sqrt{2/(1+\alpha^2)}` for :class:`LeakyReLU`, and 1 otherwise.
    """
    act = get_activation(act)
    if isinstance(act, Tanh):
        return 5.0 / 3.0
    if isinstance(act, ReLU):
        return math.sqrt(2.0)
    if isinstance(act, LeakyReLU):
        return math.sqrt(2.0 / (1.0 + act.alpha**2))
    return 1.0
