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
from collections.abc import Callable, Mapping
from typing import Any

from anyml._spec import Registry, Spec
from anyml._validate import non_negative_int, real
from anyml.backend import namespace_of, on_device_of
from anyml.schedulers import Scheduler, get_scheduler

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSProp",
    "get_optimizer",
]

Array = Any


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
        if tuple(param.shape) != tuple(param_grad.shape):
            msg = (f"{type(self).__name__}: the gradient of {param_name!r} has shape "
                   f"{tuple(param_grad.shape)}, but the parameter has shape {tuple(param.shape)}")
            raise ValueError(msg)
        xp = namespace_of(param)
        lr = self.learning_rate(cur_loss)
        grad = self._clip(param_grad, xp)
        state = self.cache.get(param_name)
        if state is None:
            state = self._new_state(param, xp)
            if state:  # stateless updates (plain SGD) leave the cache empty
                self.cache[param_name] = state
        return self._update(param, grad, state, lr, xp)

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
        raise NotImplementedError

    def _clip(self, grad: Array, xp: Any) -> Array:
        r"""Scale ``grad`` by :math:`\min(1, c / \lVert g \rVert_2)`, staying on the device."""
        if self.clip_norm is None:
            return grad
        norm = xp.linalg.vector_norm(grad)
        # c / max(norm, c) is min(1, c / norm) and never divides by zero.
        return grad * (self.clip_norm / xp.maximum(norm, self.clip_norm))  # clip syncs on CuPy


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", Optimizer)


def _register(*aliases: str):
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

    def _update(self, param, grad, state, lr, xp):
        if not self.momentum:
            return param - lr * grad
        update = self.momentum * state["update"] + lr * grad
        state["update"] = update
        return param - update


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

    def _update(self, param, grad, state, lr, xp):
        sum_sq = state["sum_sq"] + grad * grad
        state["sum_sq"] = sum_sq
        return param - lr * grad / (xp.sqrt(sum_sq) + self.eps)


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

    def _update(self, param, grad, state, lr, xp):
        mean_sq = self.decay * state["mean_sq"] + (1.0 - self.decay) * (grad * grad)
        state["mean_sq"] = mean_sq
        return param - lr * grad / (xp.sqrt(mean_sq) + self.eps)


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

    def _new_state(self, param, xp):
        return {"t": 0, **super()._new_state(param, xp)}

    def _update(self, param, grad, state, lr, xp):
        t = state["t"] = state["t"] + 1
        b1, b2 = self.decay1, self.decay2
        mean = b1 * state["mean"] + (1.0 - b1) * grad
        var = b2 * state["var"] + (1.0 - b2) * (grad * grad)
        state["mean"], state["var"] = mean, var
        m_hat = mean * (1.0 / (1.0 - b1**t))
        v_hat = var * (1.0 / (1.0 - b2**t))
        return param - lr * m_hat / (xp.sqrt(v_hat) + self.eps)


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

    def _update(self, param, grad, state, lr, xp):
        decayed = param * (1.0 - lr * self.weight_decay) if self.weight_decay else param
        return super()._update(decayed, grad, state, lr, xp)


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
