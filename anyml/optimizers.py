"""First-order optimizers that update one parameter array at a time, on any Array API backend.

A layer owns one optimizer and calls ``optimizer(param, grad, name, cur_loss)`` for each of its
parameters, then :meth:`Optimizer.step` once. The optimizer keeps per-parameter state (momentum,
running averages) in :attr:`Optimizer.cache`, created lazily with ``zeros_like(param)`` so that it
lives on the parameter's backend, device and dtype.

Names, defaults and update rules follow numpy-ml's ``neural_nets.optimizers``, with two changes:
the learning rate is asked of the scheduler once per step (numpy-ml asks once per parameter, which
feeds a :class:`~anyml.schedulers.KingScheduler` the same loss several times per step), and
gradient clipping is computed on the device without copying the norm to the host.
"""

from __future__ import annotations

import copy as _copy
import math
import operator
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from anyml._spec import Registry, Spec
from anyml._validate import non_negative_int, real
from anyml.backend import Array, device_of, namespace_of, on_device_of, replaceable
from anyml.schedulers import Scheduler, get_scheduler

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "GroupedStep",
    "Optimizer",
    "RMSProp",
    "adagrad_step",
    "adam_step",
    "get_optimizer",
    "rmsprop_step",
    "sgd_step",
]


class Optimizer(Spec):
    """Base class of the optimizers.

    Parameters
    ----------
    lr : float
        The base learning rate, >= 0.
    clip_norm : float, optional
        If given, gradients whose L2 norm exceeds it are scaled down to that norm.
    lr_scheduler : None, str, dict or Scheduler
        The learning-rate schedule; ``None`` is ``ConstantScheduler(lr=lr)``. A name given without
        its own rate takes ``lr`` (see :func:`anyml.schedulers.get_scheduler`).

    Attributes
    ----------
    cache : dict
        ``param_name -> {state name -> array}`` (Adam also keeps its step count ``"t"`` there, as
        an int).
    cur_step : int
        Optimization steps taken so far (advanced by :meth:`step`).
    lr_scheduler : Scheduler

    Notes
    -----
    The whole state is :attr:`cache` (arrays, restored by :meth:`load_cache`) plus what
    :meth:`state` returns (the step count and the scheduler's own state, as JSON data, restored by
    :meth:`load_state`). A layer's summary carries both, next to the hyperparameters, so a layer
    rebuilt from it (or from a checkpoint) continues training exactly where the saved one stopped.
    """

    # The state each parameter keeps; the first name is where numpy-ml keeps a single array.
    _state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, clip_norm: float | None, lr_scheduler: Any) -> None:
        name = type(self).__name__
        self.lr = real(name, "lr", lr, low=0.0)
        self.clip_norm = None if clip_norm is None else real(
            name, "clip_norm", clip_norm, low=0.0, low_open=True)
        self.lr_scheduler: Scheduler = get_scheduler(lr_scheduler, lr=self.lr)
        self.cache: dict[str, dict[str, Any]] = {}
        self.cur_step = 0
        self._lr_at: tuple[int, float] | None = None

    # --- the public protocol ------------------------------------------------------------
    @on_device_of(0)
    def __call__(self, param: Array, param_grad: Array, param_name: str,
                 cur_loss: float | None = None) -> Array:
        """Return the updated parameter (a new array; ``param`` is not modified).

        Parameters
        ----------
        param : array
            The current value of the parameter.
        param_grad : array
            The gradient of the loss with respect to ``param``; same shape, namespace and device.
        param_name : str
            Keys this parameter's state in :attr:`cache`.
        cur_loss : float, optional
            The loss at this step (needed by :class:`~anyml.schedulers.KingScheduler`).

        Returns
        -------
        array
            The new value, with the dtype and device of ``param``.
        """
        self._check_shapes(param, param_grad, param_name)
        xp = namespace_of(param)
        lr = self.learning_rate(cur_loss)
        grad = self._clip(param_grad, xp)
        state = self.cache.get(param_name)
        if state is None:
            state = self._new_state(param, xp)
            if state:  # stateless updates (plain SGD) leave the cache empty
                self.cache[param_name] = state
        return self._update(param, grad, state, lr, xp)

    def _check_shapes(self, param: Array, param_grad: Array, param_name: str) -> None:
        if tuple(param.shape) != tuple(param_grad.shape):
            msg = (f"{type(self).__name__}: the gradient of {param_name!r} has shape "
                   f"{tuple(param_grad.shape)}, but the parameter has shape {tuple(param.shape)}")
            raise ValueError(msg)

    def step(self) -> None:
        """Advance to the next optimization step (call once after updating every parameter)."""
        self.cur_step += 1

    def learning_rate(self, cur_loss: float | None = None) -> float:
        """The learning rate of the current step, asked of the scheduler once per step."""
        if self._lr_at is None or self._lr_at[0] != self.cur_step:
            self._lr_at = (self.cur_step, float(self.lr_scheduler(self.cur_step, cur_loss)))
        return self._lr_at[1]

    def reset(self) -> None:
        """Drop all state: the cache, the step count and the scheduler's history."""
        self.cache.clear()
        self.cur_step = 0
        self._lr_at = None
        self.lr_scheduler.reset()

    def copy(self) -> Optimizer:
        """A new optimizer with the same hyperparameters and no state (its own scheduler too)."""
        scheduler = _copy.deepcopy(self.lr_scheduler)
        scheduler.reset()
        return type(self)(**{**self.spec_params(), "lr_scheduler": scheduler})

    def map_cache(self, fn: Callable[[Array], Array]) -> None:
        """Replace every array in :attr:`cache` by ``fn(array)`` (e.g. to move it to a backend)."""
        for state in self.cache.values():
            for key, value in state.items():
                if not isinstance(value, int | float):
                    state[key] = fn(value)

    def state(self) -> dict[str, Any]:
        """The step count and the scheduler's state, as JSON data (plain ints, floats and lists).

        Returns
        -------
        dict
            ``{"cur_step": int, "lr_scheduler": dict}``, the latter from
            :meth:`anyml.schedulers.Scheduler.state` (empty for the stateless schedulers). The
            per-parameter arrays are not part of it: they are in :attr:`cache`.
        """
        return {"cur_step": int(self.cur_step), "lr_scheduler": self.lr_scheduler.state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the step count and the scheduler's state saved by :meth:`state`.

        Raises
        ------
        ValueError
            If ``state`` is not such a dict (the message names the optimizer and what is wrong).
        """
        name = type(self).__name__
        if not isinstance(state, Mapping) or set(state) != {"cur_step", "lr_scheduler"}:
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            msg = (f"{name}: expected a saved state with the entries ['cur_step', "
                   f"'lr_scheduler'], got {found}")
            raise ValueError(msg)
        step = non_negative_int(name, "the saved cur_step", state["cur_step"])
        self.lr_scheduler.load_state(state["lr_scheduler"])
        self.cur_step = step
        self._lr_at = None

    def load_cache(self, cache: Mapping[str, Any],
                   to_array: Callable[[Any], Array] | None = None) -> None:
        """Restore saved per-parameter state, converting each saved array with ``to_array``.

        Parameters
        ----------
        cache : mapping
            ``param_name -> {state name -> array}``, or numpy-ml's layout where optimizers with one
            state array store it directly (``param_name -> array``).
        to_array : callable, optional
            Turns a saved (host) array into an array of the layer's backend, e.g.
            ``backend.asarray``. Default: keep the arrays as they are.

        An optimizer without state (SGD without momentum) ignores the saved cache.
        """
        if not self._state_names:
            return  # plain SGD needs nothing (numpy-ml saves its last update even so)
        convert = (lambda a: a) if to_array is None else to_array
        for name, saved in cache.items():
            if isinstance(saved, Mapping):
                state = {k: v if isinstance(v, int | float) else convert(v) for k, v in saved.items()}
            else:
                state = {self._state_names[0]: convert(saved)}
            self.cache[name] = state

    # --- what subclasses provide -----------------------------------------------------------
    def _new_state(self, param: Array, xp: Any) -> dict[str, Any]:
        return {key: xp.zeros_like(param) for key in self._state_names}

    def _update(self, param: Array, grad: Array, state: dict[str, Any], lr: float,
                xp: Any) -> Array:
        """One parameter's update: advance its own step count, run :meth:`_apply`, keep the state."""
        t = self._advance(state)
        new, arrays = self._apply(param, grad, tuple(state[k] for k in self._state_names), lr, t)
        for key, value in zip(self._state_names, arrays, strict=True):
            state[key] = value
        return new

    def _advance(self, state: dict[str, Any]) -> int:
        """Advance a parameter's own step count where the update needs one (Adam); else 0."""
        return 0

    def _apply(self, param: Array, grad: Array, states: tuple[Array, ...], lr: float,
               t: int) -> tuple[Array, tuple[Array, ...]]:
        """The elementwise update: ``(new param, new state arrays in _state_names order)``.

        It works on arrays of any shape, so the same code updates one parameter or the flat
        concatenation of many (:class:`GroupedStep`), with the same result element by element.
        """
        raise NotImplementedError

    def _group_config(self) -> tuple[Any, ...] | None:
        """What must be equal for two optimizers to update their parameters together (besides the
        class, the current rate and Adam's step count); ``None``: never grouped (a subclass)."""
        kind = type(self)
        if kind not in _GROUPABLE:
            return None
        get = _CONFIG_GETTERS.get(kind)
        if get is None:  # the hyperparameters but the rate, read by one C call per step (one name
            # twice, so that the getter returns a tuple however few there are)
            fields = [k for k in self._spec_fields if k != "lr" and k != "lr_scheduler"]
            get = _CONFIG_GETTERS[kind] = operator.attrgetter(*fields, fields[0])
        return get(self)  # type: ignore[no-any-return]

    def _clip(self, grad: Array, xp: Any) -> Array:
        r"""Scale ``grad`` by :math:`\min(1, c / \lVert g \rVert_2)`, staying on the device."""
        if self.clip_norm is None:
            return grad
        norm = xp.linalg.vector_norm(grad)
        # c / max(norm, c) is min(1, c / norm) and never divides by zero.
        return grad * (self.clip_norm / xp.maximum(norm, self.clip_norm))  # clip syncs on CuPy


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", Optimizer)


def _register(*aliases: str) -> Callable[[type[Optimizer]], type[Optimizer]]:
    def decorate(cls: type[Optimizer]) -> type[Optimizer]:
        return OPTIMIZERS.register(cls, *aliases)

    return decorate


@_register()
class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum.

    Parameters
    ----------
    lr : float
        Default 0.01.
    momentum : float
        In [0, 1). Default 0.0.
    clip_norm : float, optional
        Default None (no clipping).
    lr_scheduler : None, str, dict or Scheduler
        Default None (constant ``lr``).

    Notes
    -----
    With learning rate :math:`\eta_t` and momentum :math:`\mu`:

    .. math::

        u_t = \mu\, u_{t-1} + \eta_t\, g_t, \qquad \theta_t = \theta_{t-1} - u_t,

    with :math:`u_0 = 0`. Without momentum no state is kept. (PyTorch keeps
    :math:`b_t = \mu b_{t-1} + g_t` and subtracts :math:`\eta_t b_t`; the two agree while
    :math:`\eta` is constant.)

    With ``clip_norm`` :math:`c`, :math:`g_t` is first scaled by
    :math:`\min(1, c / \lVert g_t \rVert_2)`.
    """

    _spec_fields = ("lr", "momentum", "clip_norm", "lr_scheduler")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, clip_norm: float | None = None,
                 lr_scheduler: Any = None) -> None:
        super().__init__(lr, clip_norm, lr_scheduler)
        self.momentum = real("SGD", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        self._state_names = ("update",) if self.momentum else ()

    def _apply(self, param: Array, grad: Array, states: tuple[Array, ...], lr: float,
               t: int) -> tuple[Array, tuple[Array, ...]]:
        new, update = sgd_step(param, grad, states[0] if states else None, lr, self.momentum)
        return new, (() if update is None else (update,))


@_register("adagrad")
class AdaGrad(Optimizer):
    r"""AdaGrad: per-coordinate steps scaled by the root of the summed squared gradients.

    Parameters
    ----------
    lr : float
        Default 0.01.
    eps : float
        Added to the denominator, > 0. Default 1e-7.
    clip_norm : float, optional
        Default None.
    lr_scheduler : None, str, dict or Scheduler
        Default None.

    Notes
    -----
    .. math::

        G_t = G_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{g_t}{\sqrt{G_t} + \epsilon},

    with :math:`G_0 = 0` and all operations elementwise.

    With ``clip_norm`` :math:`c`, :math:`g_t` is first scaled by
    :math:`\min(1, c / \lVert g_t \rVert_2)`.
    """

    _spec_fields = ("lr", "eps", "clip_norm", "lr_scheduler")
    _state_names = ("sum_sq",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, clip_norm: float | None = None,
                 lr_scheduler: Any = None) -> None:
        super().__init__(lr, clip_norm, lr_scheduler)
        self.eps = real("AdaGrad", "eps", eps, low=0.0, low_open=True)

    def _apply(self, param: Array, grad: Array, states: tuple[Array, ...], lr: float,
               t: int) -> tuple[Array, tuple[Array, ...]]:
        new, sum_sq = adagrad_step(param, grad, states[0], lr, self.eps)
        return new, (sum_sq,)


@_register("rmsprop")
class RMSProp(Optimizer):
    r"""RMSProp: steps scaled by a running root-mean-square of the gradients.

    Parameters
    ----------
    lr : float
        Default 0.001.
    decay : float
        Weight of the old average, in [0, 1). Default 0.9.
    eps : float
        Added to the denominator, > 0. Default 1e-7.
    clip_norm : float, optional
        Default None.
    lr_scheduler : None, str, dict or Scheduler
        Default None.

    Notes
    -----
    .. math::

        S_t = \rho\, S_{t-1} + (1 - \rho)\, g_t^2, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{g_t}{\sqrt{S_t} + \epsilon},

    with :math:`S_0 = 0` and :math:`\rho` = ``decay``.

    With ``clip_norm`` :math:`c`, :math:`g_t` is first scaled by
    :math:`\min(1, c / \lVert g_t \rVert_2)`.
    """

    _spec_fields = ("lr", "decay", "eps", "clip_norm", "lr_scheduler")
    _state_names = ("mean_sq",)

    def __init__(self, lr: float = 0.001, decay: float = 0.9, eps: float = 1e-7,
                 clip_norm: float | None = None, lr_scheduler: Any = None) -> None:
        super().__init__(lr, clip_norm, lr_scheduler)
        self.decay = real("RMSProp", "decay", decay, low=0.0, high=1.0, high_open=True)
        self.eps = real("RMSProp", "eps", eps, low=0.0, low_open=True)

    def _apply(self, param: Array, grad: Array, states: tuple[Array, ...], lr: float,
               t: int) -> tuple[Array, tuple[Array, ...]]:
        new, mean_sq = rmsprop_step(param, grad, states[0], lr, self.decay, self.eps)
        return new, (mean_sq,)


@_register()
class Adam(Optimizer):
    r"""Adam: bias-corrected running averages of the gradient and its square.

    Parameters
    ----------
    lr : float
        Default 0.001.
    decay1 : float
        Decay of the first moment, in [0, 1). Default 0.9.
    decay2 : float
        Decay of the second moment, in [0, 1). Default 0.999.
    eps : float
        Added to the denominator, > 0. Default 1e-7.
    clip_norm : float, optional
        Default None.
    lr_scheduler : None, str, dict or Scheduler
        Default None.

    Notes
    -----
    With :math:`t` counted per parameter from 1:

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,

    .. math::

        \theta_t = \theta_{t-1} - \eta_t
            \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon},

    with :math:`m_0 = v_0 = 0`, :math:`\beta_1` = ``decay1`` and :math:`\beta_2` = ``decay2``.

    With ``clip_norm`` :math:`c`, :math:`g_t` is first scaled by
    :math:`\min(1, c / \lVert g_t \rVert_2)`.
    """

    _spec_fields = ("lr", "decay1", "decay2", "eps", "clip_norm", "lr_scheduler")
    _state_names = ("mean", "var")

    def __init__(self, lr: float = 0.001, decay1: float = 0.9, decay2: float = 0.999,
                 eps: float = 1e-7, clip_norm: float | None = None,
                 lr_scheduler: Any = None) -> None:
        super().__init__(lr, clip_norm, lr_scheduler)
        self.decay1 = real("Adam", "decay1", decay1, low=0.0, high=1.0, high_open=True)
        self.decay2 = real("Adam", "decay2", decay2, low=0.0, high=1.0, high_open=True)
        self.eps = real("Adam", "eps", eps, low=0.0, low_open=True)

    def _new_state(self, param: Array, xp: Any) -> dict[str, Any]:
        return {"t": 0, **super()._new_state(param, xp)}

    def _advance(self, state: dict[str, Any]) -> int:
        t: int = state["t"] + 1
        state["t"] = t
        return t

    def _apply(self, param: Array, grad: Array, states: tuple[Array, ...], lr: float,
               t: int) -> tuple[Array, tuple[Array, ...]]:
        new, mean, var = adam_step(param, grad, states[0], states[1], lr, self.decay1,
                                   self.decay2, self.eps, t, self._weight_decay())
        return new, (mean, var)

    def _weight_decay(self) -> float:
        return 0.0


@_register("adam_w")
class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter's AdamW).

    Parameters
    ----------
    lr, decay1, decay2, eps, clip_norm, lr_scheduler
        As for :class:`Adam`.
    weight_decay : float
        The decay rate :math:`\lambda`, >= 0. Default 0.01 (as ``torch.optim.AdamW``).

    Notes
    -----
    The decay shrinks the parameter directly instead of being added to the gradient (where Adam's
    normalization would weaken it for parameters with large gradients):

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \lambda \theta_{t-1} - \eta_t
            \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}

    with :math:`m_t, v_t` as in :class:`Adam` (the clipped gradient feeds them; the decay does not).
    Every parameter the optimizer updates decays, biases included, as ``torch.optim.AdamW`` does
    for the parameters it is given.
    """

    _spec_fields = ("lr", "decay1", "decay2", "eps", "weight_decay", "clip_norm",  # type: ignore[assignment]
                    "lr_scheduler")

    def __init__(self, lr: float = 0.001, decay1: float = 0.9, decay2: float = 0.999,
                 eps: float = 1e-7, weight_decay: float = 0.01, clip_norm: float | None = None,
                 lr_scheduler: Any = None) -> None:
        super().__init__(lr, decay1, decay2, eps, clip_norm, lr_scheduler)
        self.weight_decay = real("AdamW", "weight_decay", weight_decay, low=0.0)

    def _weight_decay(self) -> float:
        return self.weight_decay


_GROUPABLE = (SGD, AdaGrad, RMSProp, Adam, AdamW)
_CONFIG_GETTERS: dict[type[Optimizer], Callable[[Optimizer], tuple[Any, ...]]] = {}


# --------------------------------------------------------------------------- the update kernels
# Pure Array API, elementwise, on arrays of any shape; each returns fresh arrays and changes none of
# its arguments (in-place operators only touch temporaries it made). A backend may replace them by
# native fused kernels (see ``register_fast_path``), which must give the same values.
@replaceable
def sgd_step(param: Array, grad: Array, update: Array | None, lr: float,
             momentum: float) -> tuple[Array, Array | None]:
    r"""One SGD step: :math:`u' = \mu u + \eta g`, :math:`\theta' = \theta - u'`.

    Without state (``update`` is ``None``) it is :math:`\theta' = \theta - \eta g` and the new
    state is ``None``. Two elementwise kernels without momentum, four with.

    Returns
    -------
    new_param, new_update
    """
    step = grad * lr
    if update is None:
        return param - step, None
    new_update = update * momentum
    new_update += step
    return param - new_update, new_update


@replaceable
def adagrad_step(param: Array, grad: Array, sum_sq: Array, lr: float,
                 eps: float) -> tuple[Array, Array]:
    r"""One AdaGrad step: :math:`G' = G + g^2`, :math:`\theta' = \theta - \eta g / (\sqrt{G'} + \epsilon)`.

    Returns
    -------
    new_param, new_sum_sq
    """
    new_sum_sq = grad * grad
    new_sum_sq += sum_sq
    step = _sqrt(new_sum_sq)
    step += eps
    step = _divide_into(grad * lr, step)
    return param - step, new_sum_sq


@replaceable
def rmsprop_step(param: Array, grad: Array, mean_sq: Array, lr: float, decay: float,
                 eps: float) -> tuple[Array, Array]:
    r"""One RMSProp step: :math:`S' = \rho S + (1 - \rho) g^2`,
    :math:`\theta' = \theta - \eta g / (\sqrt{S'} + \epsilon)`.

    Returns
    -------
    new_param, new_mean_sq
    """
    new_mean_sq = mean_sq * decay
    sq = grad * grad
    sq *= 1.0 - decay
    new_mean_sq += sq
    del sq
    step = _sqrt(new_mean_sq)
    step += eps
    step = _divide_into(grad * lr, step)
    return param - step, new_mean_sq


@replaceable
def adam_step(param: Array, grad: Array, mean: Array, var: Array, lr: float, decay1: float,
              decay2: float, eps: float, t: int,
              weight_decay: float = 0.0) -> tuple[Array, Array, Array]:
    r"""One Adam (AdamW with ``weight_decay``) step at step count ``t`` (from 1).

    .. math::

        m' = \beta_1 m + (1 - \beta_1) g, \qquad v' = \beta_2 v + (1 - \beta_2) g^2, \qquad
        \theta' = (1 - \eta\lambda)\,\theta
            - \frac{\eta \sqrt{b_2}}{b_1} \frac{m'}{\sqrt{v'} + \epsilon \sqrt{b_2}}

    with the bias corrections :math:`b_i = 1 - \beta_i^t` folded into two host scalars: this is
    :math:`\eta\, \hat m / (\sqrt{\hat v} + \epsilon)` with :math:`\hat m = m' / b_1`,
    :math:`\hat v = v' / b_2`, in twelve elementwise kernels (thirteen with weight decay).

    Returns
    -------
    new_param, new_mean, new_var
    """
    new_mean = mean * decay1
    scaled = grad * (1.0 - decay1)
    new_mean += scaled
    del scaled
    new_var = var * decay2
    sq = grad * grad
    sq *= 1.0 - decay2
    new_var += sq
    del sq
    root_bc2 = math.sqrt(1.0 - decay2**t)
    denom = _sqrt(new_var)
    denom += eps * root_bc2
    step = _divide_into(new_mean * (lr * root_bc2 / (1.0 - decay1**t)), denom)
    if weight_decay:
        new_param = param * (1.0 - lr * weight_decay)
        new_param -= step
    else:
        new_param = param - step
    return new_param, new_mean, new_var


def _sqrt(x: Array) -> Array:
    return namespace_of(x).sqrt(x)


def _divide_into(numerator: Array, denominator: Array) -> Array:
    """``numerator / denominator`` computed in place into ``numerator`` (a temporary of the caller),
    dropping the caller's last reference to ``denominator`` before returning."""
    numerator /= denominator
    return numerator


# --------------------------------------------------------------------------- grouped step
class _Kept:
    """A group after a step: its flat state, parameters and (flushed) gradients, and the views of
    them its optimizers, parameter and gradient mappings hold (the next step reuses a flat array
    while every holder still holds exactly its view)."""

    __slots__ = ("flats", "grad", "grad_views", "param", "param_views", "state_views", "views")

    def __init__(self, flats: tuple[Array, ...], views: list[tuple[Array, ...]], param: Array,
                 param_views: list[Array], grad: Array | None, grad_views: list[Array]) -> None:
        self.flats, self.views = flats, views
        self.state_views = [view for member in views for view in member]
        self.param, self.param_views = param, param_views
        self.grad, self.grad_views = grad, grad_views


# one parameter in a group: (optimizer, parameters, name, gradient, gradients)
_Member = tuple[Optimizer, MutableMapping[str, Array], str, Array, MutableMapping[str, Array]]


class GroupedStep:
    r"""A multi-tensor optimizer step: the parameters of many optimizers updated in one set of
    elementwise kernels.

    Every layer owns its optimizer (numpy-ml style), so a model of ``k`` parameters would launch
    about ``12 k`` kernels per Adam step. :meth:`apply` instead sorts the parameters of all the
    optimizers it is given into groups that share one update: the same optimizer class and
    hyperparameters (the schedule excepted), the same learning rate at this step, the same per-
    parameter step count (Adam), dtype and device. For each group it concatenates the (clipped)
    gradients and the parameters into flat arrays, runs the optimizer's elementwise update
    (:func:`adam_step`, ...) once on them, and hands every parameter back as a view of the flat
    result. The state arrays in each optimizer's :attr:`~Optimizer.cache` become views of the
    group's flat state, which the next step reuses while the caches still hold exactly those views
    (a per-layer update, ``load_cache``, ``map_cache`` or ``reset`` in between makes it concatenate
    them afresh).

    The result is the same, element by element, as calling each optimizer on each parameter and
    then :meth:`Optimizer.step` (each learning rate is still asked of each optimizer's own
    scheduler, once per step). Nothing given is modified in place: parameters and state are
    replaced by new arrays, as the per-parameter path does.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], _Kept] = {}

    def apply(self, items: Sequence[tuple[Optimizer, MutableMapping[str, Array], MutableMapping[str, Array]]],
              cur_loss: float | None = None, *, flush: bool = False) -> list[Array]:
        """Update ``parameters[name]`` for every ``name`` in ``gradients``, for every
        ``(optimizer, parameters, gradients)``, then advance each optimizer one step.

        Each optimizer must appear once; its parameters are keyed by name as in the per-layer
        path (``optimizer(parameters[name], gradients[name], name, cur_loss)``).

        With ``flush=True`` every gradient is then replaced by zeros (as
        :meth:`~anyml.layers.LayerBase.flush_gradients` does): the gradients of a group become
        views of one flat zero array, which the next step takes as the group's flat gradient
        without a concatenation while every gradient is still that view (accumulated in place).

        Returns
        -------
        list of arrays
            Arrays that hold every updated parameter between them (the flat result of each group,
            the new value of each parameter updated alone), e.g. for one finiteness check.
        """
        groups: dict[tuple[Any, ...], list[_Member]] = {}
        for opt, params, grads in items:
            config = opt._group_config()
            lr = opt.learning_rate(cur_loss)
            cache = opt.cache
            for name, grad in grads.items():
                param = params[name]
                if param.shape != grad.shape:
                    opt._check_shapes(param, grad, name)
                state = cache.get(name)
                t = 0 if state is None else int(state.get("t", 0))
                # dtype objects as they are (hashable everywhere; NumPy's str of one is slow)
                key = (type(opt), config, lr, t, param.dtype, str(param.device),
                       type(param)) if config is not None else (id(opt), name)
                groups.setdefault(key, []).append((opt, params, name, grad, grads))
        kept: dict[tuple[Any, ...], _Kept] = {}
        updated = []
        for key, members in groups.items():
            if len(members) == 1 or len(key) == 2:
                for opt, params, name, grad, grads in members:
                    params[name] = opt(params[name], grad, name, cur_loss)
                    updated.append(params[name])
                    if flush:
                        grads[name] = namespace_of(grad).zeros(grad.shape, dtype=grad.dtype,
                                                               device=grad.device)
            else:
                with device_of(members[0][1][members[0][2]]):
                    updated.append(self._run(members, key[2], kept, flush))
        self._kept = kept
        for opt, _, _ in items:
            opt.step()
        return updated

    def _run(self, members: list[_Member], lr: float, kept: dict[tuple[Any, ...], _Kept],
             flush: bool) -> Array:
        first = members[0][0]
        names = first._state_names
        xp = namespace_of(members[0][1][members[0][2]])
        params = [p[name] for _, p, name, _, _ in members]
        shapes = [tuple(p.shape) for p in params]
        sizes = [math.prod(s) for s in shapes]
        signature = tuple((id(opt), name, shape)
                          for (opt, _, name, _, _), shape in zip(members, shapes, strict=True))
        old = self._kept.get(signature)
        if old is not None and all(p is v for p, v in zip(params, old.param_views, strict=True)):
            flat_param = old.param  # every parameter is still its view of the last flat result
        else:
            flat_param = xp.concat([xp.reshape(p, (-1,)) for p in params])
        if (old is not None and old.grad is not None and first.clip_norm is None
                and all(m[3] is v for m, v in zip(members, old.grad_views, strict=True))):
            flat_grad = old.grad  # the flushed zeros, accumulated in place through the views
        else:
            flat_grad = xp.concat([xp.reshape(opt._clip(g, xp), (-1,))
                                   for opt, _, _, g, _ in members])
        flats: tuple[Array, ...] = ()
        t = 0
        if names:
            states = []
            for (opt, _, name, _, _), param in zip(members, params, strict=True):
                state = opt.cache.get(name)
                if state is None:
                    state = opt.cache[name] = opt._new_state(param, xp)
                t = opt._advance(state)
                states.append(state)
            if old is not None and all(map(operator.is_, [state[k] for state in states for k in names],
                                           old.state_views)):
                flats = old.flats
            else:
                flats = tuple(xp.concat([xp.reshape(state[k], (-1,)) for state in states])
                              for k in names)
        new_param, new_flats = first._apply(flat_param, flat_grad, flats, lr, t)
        zeros = (xp.zeros(flat_grad.shape, dtype=flat_grad.dtype, device=flat_grad.device)
                 if flush else None)
        views: list[tuple[Array, ...]] = []
        param_views: list[Array] = []
        grad_views: list[Array] = []
        flat_arrays = (new_param, *new_flats) if zeros is None else (new_param, *new_flats, zeros)
        start = 0
        for (opt, p, name, _, grads), shape, size in zip(members, shapes, sizes, strict=True):
            stop = start + size
            # a slice of a flat array is already the view a 1-d parameter needs
            if len(shape) == 1:
                parts = [flat[start:stop] for flat in flat_arrays]
            else:
                parts = [xp.reshape(flat[start:stop], shape) for flat in flat_arrays]
            p[name] = parts[0]
            param_views.append(parts[0])
            if names:
                member_views = tuple(parts[1:1 + len(names)])
                state = opt.cache[name]
                for k, state_view in zip(names, member_views, strict=True):
                    state[k] = state_view
                views.append(member_views)
            if zeros is not None:
                grads[name] = parts[-1]
                grad_views.append(parts[-1])
            start = stop
        kept[signature] = _Kept(tuple(new_flats), views, new_param, param_views, zeros, grad_views)
        return new_param


def get_optimizer(spec: Any = None) -> Optimizer:
    """Build an optimizer from ``None``, a name or spec string, a dict or an :class:`Optimizer`.

    Parameters
    ----------
    spec : None, str, dict or Optimizer
        ``None`` gives ``SGD()``. A string is a name (``"adam"``, ``"rmsprop"``, case and ``_``
        ignored) or a spec such as ``"Adam(lr=0.01, lr_scheduler=NoamScheduler())"``. A dict is
        ``{"id": name, **hyperparameters}`` or a summary ``{"hyperparameters": {...}, "cache":
        {...}, "state": {...}}`` (numpy-ml's has no ``"state"``), of which only the hyperparameters
        are read: the saved state is restored by the layer (``set_params``), which alone knows the
        backend the cache's arrays belong on (see :meth:`Optimizer.load_cache` and
        :meth:`Optimizer.load_state`). An Optimizer is **copied** (same hyperparameters, fresh
        state), since every layer needs its own state.

    Returns
    -------
    Optimizer

    Examples
    --------
    >>> from anyml.optimizers import get_optimizer
    >>> get_optimizer("adam")
    Adam(lr=0.001, decay1=0.9, decay2=0.999, eps=1e-07, clip_norm=None, lr_scheduler=ConstantScheduler(lr=0.001))
    """  # noqa: E501
    if isinstance(spec, Optimizer):
        return spec.copy()
    return OPTIMIZERS.get(spec, default=SGD)
