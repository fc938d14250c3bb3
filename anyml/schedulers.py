"""Learning-rate schedulers: the learning rate as a function of the step (and, for one, the loss).

Schedulers work with plain Python floats on the host; they never touch arrays. An optimizer asks its
scheduler once per optimization step. Names and defaults follow numpy-ml's
``neural_nets.schedulers``; schedulers are also built from strings such as ``"noam"`` or
``"ExponentialScheduler(initial_lr=0.1, stage_length=100)"``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from anyml._spec import Registry, Spec
from anyml._validate import non_negative_int, positive_int, real

__all__ = [
    "SCHEDULERS",
    "ConstantScheduler",
    "ExponentialScheduler",
    "KingScheduler",
    "NoamScheduler",
    "Scheduler",
    "get_scheduler",
]


class Scheduler(Spec):
    """Base class of the schedulers: ``scheduler(step, cur_loss=None)`` gives the learning rate."""

    # The constructor argument that holds the base learning rate, if any (used by get_scheduler).
    _lr_field: str | None = None

    def __call__(self, step: int, cur_loss: float | None = None) -> float:
        """The learning rate for ``step``; the same as :meth:`learning_rate`."""
        return self.learning_rate(step, cur_loss)

    def learning_rate(self, step: int, cur_loss: float | None = None) -> float:
        """The learning rate for optimization step ``step`` (counted from 0).

        Parameters
        ----------
        step : int
            The optimization step, from 0.
        cur_loss : float, optional
            The loss at this step; only :class:`KingScheduler` needs it.
        """
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any state gathered from past steps (nothing, for stateless schedulers)."""

    def state(self) -> dict[str, Any]:
        """What the scheduler has gathered from past steps, as JSON data (empty when stateless).

        Together with :attr:`hyperparameters` it rebuilds the scheduler exactly, through
        :meth:`load_state`; optimizers save it in their own :meth:`~anyml.optimizers.Optimizer.state`.
        """
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned (a stateless scheduler accepts only an empty dict).

        Raises
        ------
        ValueError
            If ``state`` is not a dict, lacks an entry or holds one this scheduler does not keep.
        """
        _check_state(type(self).__name__, state, ())


def _check_state(owner: str, state: Any, keys: tuple[str, ...]) -> None:
    """Raise a ValueError unless ``state`` is a mapping with exactly the entries ``keys``."""
    if not isinstance(state, Mapping) or set(state) != set(keys):
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        msg = f"{owner}: expected a saved state with the entries {sorted(keys)}, got {found}"
        raise ValueError(msg)


SCHEDULERS: Registry[Scheduler] = Registry("scheduler", Scheduler)


def _register(*aliases: str) -> Callable[[type[Scheduler]], type[Scheduler]]:
    def decorate(cls: type[Scheduler]) -> type[Scheduler]:
        return SCHEDULERS.register(cls, *aliases)

    return decorate


@_register("constant")
class ConstantScheduler(Scheduler):
    """The same learning rate at every step.

    Parameters
    ----------
    lr : float
        Default 0.01.
    """

    _spec_fields = ("lr",)
    _lr_field = "lr"

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = real("ConstantScheduler", "lr", lr, low=0.0)

    def learning_rate(self, step: int, cur_loss: float | None = None) -> float:
        return self.lr


@_register("exponential")
class ExponentialScheduler(Scheduler):
    r"""Exponential decay: the rate falls by a factor ``decay`` every ``stage_length`` steps.

    Parameters
    ----------
    initial_lr : float
        The rate at step 0. Default 0.01.
    stage_length : int
        Steps per factor of ``decay``. Default 500.
    staircase : bool
        Drop in steps at multiples of ``stage_length`` instead of continuously. Default False.
    decay : float
        Factor per stage, > 0. Default 0.1.

    Notes
    -----
    .. math::

        \eta(t) = \eta_0 \, d^{\,t / L} \quad\text{or, with staircase,}\quad
        \eta(t) = \eta_0 \, d^{\,\lfloor t / L \rfloor}.
    """

    _spec_fields = ("initial_lr", "stage_length", "staircase", "decay")
    _lr_field = "initial_lr"

    def __init__(self, initial_lr: float = 0.01, stage_length: int = 500, staircase: bool = False,
                 decay: float = 0.1) -> None:
        self.initial_lr = real("ExponentialScheduler", "initial_lr", initial_lr, low=0.0)
        self.stage_length = positive_int("ExponentialScheduler", "stage_length", stage_length)
        if not isinstance(staircase, bool):
            msg = f"ExponentialScheduler: staircase must be True or False, got {staircase!r}"
            raise ValueError(msg)
        self.staircase = staircase
        self.decay = real("ExponentialScheduler", "decay", decay, low=0.0, low_open=True)

    def learning_rate(self, step: int, cur_loss: float | None = None) -> float:
        stage = step / self.stage_length
        if self.staircase:
            stage = math.floor(stage)
        return self.initial_lr * self.decay**stage


@_register("noam")
class NoamScheduler(Scheduler):
    r"""The warm-up-then-decay schedule of "Attention Is All You Need" (Vaswani et al., 2017).

    Parameters
    ----------
    model_dim : int
        The model (embedding) dimension. Default 512.
    scale_factor : float
        Overall multiplier, > 0. Default 1.0.
    warmup_steps : int
        Steps of linear warm-up. Default 4000.

    Notes
    -----
    With :math:`s = \text{step} + 1`,

    .. math::

        \eta = \text{scale\_factor}\cdot d_\text{model}^{-1/2}
            \min\left(s^{-1/2},\; s \cdot \text{warmup}^{-3/2}\right),

    rising linearly for ``warmup_steps`` steps and then falling as :math:`s^{-1/2}`. numpy-ml uses
    :math:`s = \text{step}`, which gives a zero rate (or a division by zero) at step 0; counting
    steps from 1 here makes the first update a real one.
    """

    _spec_fields = ("model_dim", "scale_factor", "warmup_steps")

    def __init__(self, model_dim: int = 512, scale_factor: float = 1.0,
                 warmup_steps: int = 4000) -> None:
        self.model_dim = positive_int("NoamScheduler", "model_dim", model_dim)
        self.scale_factor = real("NoamScheduler", "scale_factor", scale_factor, low=0.0, low_open=True)
        self.warmup_steps = positive_int("NoamScheduler", "warmup_steps", warmup_steps)

    def learning_rate(self, step: int, cur_loss: float | None = None) -> float:
        s = step + 1
        return (self.scale_factor * self.model_dim**-0.5
                * min(s**-0.5, s * self.warmup_steps**-1.5))


class _RunningSlope:
    """Least-squares line through points ``(0, y0), (1, y1), ...`` added one at a time.

    Keeps centered sums (Welford's updates), so a long flat history loses no precision.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean_x = self.mean_y = 0.0
        self.sxx = self.sxy = self.syy = 0.0

    def add(self, y: float) -> None:
        x = float(self.n)
        self.n += 1
        dx = x - self.mean_x
        dy = y - self.mean_y
        self.mean_x += dx / self.n
        self.mean_y += dy / self.n
        self.sxx += dx * (x - self.mean_x)
        self.sxy += dx * (y - self.mean_y)
        self.syy += dy * (y - self.mean_y)

    def probability_slope_positive(self) -> float:
        """:math:`P(\\text{slope} > 0)` under a normal law with the fit's slope and standard error."""
        slope = self.sxy / self.sxx
        rss = max(self.syy - self.sxy * slope, 0.0)
        stderr = math.sqrt(rss / (self.n - 2) / self.sxx)
        if stderr == 0.0:
            return 1.0 if slope > 0 else 0.0
        return 0.5 * math.erfc(-slope / (stderr * math.sqrt(2.0)))


def _steps_without_decrease(losses: list[float], threshold: float = 0.51) -> int:
    """dlib's ``count_steps_without_decrease`` over ``losses`` (oldest first).

    Walk back from the newest loss, fitting a line to the ``j`` newest; the result is the largest
    ``j >= 3`` for which the probability that the loss was decreasing over them is below
    ``threshold`` (0 when there is none).
    """
    fit = _RunningSlope()
    count = 0
    for j, loss in enumerate(reversed(losses), start=1):
        fit.add(loss)
        # Walking backwards, a rising line means the loss was falling.
        if fit.n > 2 and fit.probability_slope_positive() < threshold:
            count = j
    return count


def _steps_without_decrease_robust(losses: list[float], threshold: float = 0.51,
                                   discard: float = 0.10) -> int:
    """As :func:`_steps_without_decrease`, ignoring the ``discard`` fraction of largest losses.

    Ignored losses still count as steps; they only stay out of the fit.
    """
    n_drop = int(len(losses) * discard)
    if n_drop == 0:
        return _steps_without_decrease(losses, threshold)
    cutoff = sorted(losses)[len(losses) - n_drop - 1]
    fit = _RunningSlope()
    count = 0
    for j, loss in enumerate(reversed(losses), start=1):
        if loss <= cutoff:
            fit.add(loss)
        if fit.n > 2 and fit.probability_slope_positive() < threshold:
            count = j
    return count


@_register("king")
class KingScheduler(Scheduler):
    r"""Shrink the learning rate when the loss stops falling (Davis King's rule in dlib).

    Parameters
    ----------
    initial_lr : float
        The starting rate. Default 0.01.
    patience : int
        How many steps without a decrease to tolerate. Default 1000.
    decay : float
        The factor applied to the rate when patience runs out, in (0, 1]. Default 0.99.

    Attributes
    ----------
    current_lr : float
        The rate now in force.
    history : collections.deque
        The last :math:`\lceil 1.1 (\text{patience} + 1) \rceil` losses.

    Notes
    -----
    Each step appends ``cur_loss`` to the history. Walking back from the newest loss and fitting a
    least-squares line :math:`y = a + b x` to the :math:`j` newest, with standard error

    .. math::

        \operatorname{se}(b) = \sqrt{\frac{\sum_i (y_i - a - b x_i)^2}{(j - 2) \sum_i (x_i -
        \bar x)^2}},

    the probability that the loss was decreasing over those steps is
    :math:`\Phi(b / \operatorname{se}(b))` (a normal CDF). The number of steps without decrease is
    the largest :math:`j` for which that probability is below 0.51. It is computed twice: on all
    losses, and robustly, leaving the 10% largest losses out of the fit (to ignore spikes). When both
    counts exceed ``patience``, ``current_lr *= decay`` and the history is cleared.

    A perfectly flat history (zero residuals) counts as not decreasing. The history grows by one
    loss per distinct ``step``: asking twice for the same step returns the same rate without
    recording the loss again (numpy-ml records a loss for every parameter of a layer).

    :meth:`state` and :meth:`load_state` carry ``current_lr``, the history and the last recorded step
    through a layer's summary and a checkpoint, so a resumed run goes on at the decayed rate.
    """

    _spec_fields = ("initial_lr", "patience", "decay")
    _lr_field = "initial_lr"

    def __init__(self, initial_lr: float = 0.01, patience: int = 1000,
                 decay: float = 0.99) -> None:
        self.initial_lr = real("KingScheduler", "initial_lr", initial_lr, low=0.0)
        self.patience = positive_int("KingScheduler", "patience", patience)
        self.decay = real("KingScheduler", "decay", decay, low=0.0, low_open=True, high=1.0)
        self.max_history = math.ceil(1.1 * (self.patience + 1))
        self.reset()

    def reset(self) -> None:
        """Return to ``initial_lr`` with an empty loss history."""
        self.current_lr = self.initial_lr
        self.history: deque[float] = deque(maxlen=self.max_history)
        self._last_step: int | None = None

    def state(self) -> dict[str, Any]:
        """``{"current_lr": float, "history": [float, ...], "last_step": int or None}``.

        The history is oldest first; ``last_step`` is the last step whose loss was recorded, so a
        restored scheduler asked again for that step does not record its loss twice.
        """
        return {"current_lr": float(self.current_lr), "history": [float(x) for x in self.history],
                "last_step": self._last_step}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the rate in force and the loss history saved by :meth:`state`.

        A history longer than this scheduler keeps is cut to its newest losses.
        """
        _check_state("KingScheduler", state, ("current_lr", "history", "last_step"))
        current_lr = real("KingScheduler", "the saved current_lr", state["current_lr"], low=0.0)
        history = state["history"]
        if not isinstance(history, list | tuple) or not all(
                isinstance(x, Real) and not isinstance(x, bool) for x in history):
            msg = f"KingScheduler: the saved history must be a list of numbers, got {history!r}"
            raise ValueError(msg)
        last_step = state["last_step"]
        if last_step is not None:
            last_step = non_negative_int("KingScheduler", "the saved last_step", last_step)
        self.current_lr = current_lr
        self.history = deque((float(x) for x in history), maxlen=self.max_history)
        self._last_step = last_step

    def steps_without_decrease(self, robust: bool = False) -> int:
        """The current count of steps without decrease (plain or robust) over :attr:`history`."""
        losses = list(self.history)
        return _steps_without_decrease_robust(losses) if robust else _steps_without_decrease(losses)

    def learning_rate(self, step: int, cur_loss: float | None = None) -> float:
        if cur_loss is None:
            msg = (f"KingScheduler: cur_loss is required (the loss at step {step}); "
                   f"pass it to the optimizer call")
            raise ValueError(msg)
        if step == self._last_step:
            return self.current_lr
        self._last_step = step
        self.history.append(float(cur_loss))
        # A count cannot exceed the history's length, so skip the work until it could.
        if len(self.history) > self.patience and (
                self.steps_without_decrease() > self.patience
                and self.steps_without_decrease(robust=True) > self.patience):
            self.current_lr *= self.decay
            self.history.clear()
        return self.current_lr


def get_scheduler(spec: Any = None, lr: float | None = None) -> Scheduler:
    """Build a scheduler from ``None``, a name or spec string, a dict or a :class:`Scheduler`.

    Parameters
    ----------
    spec : None, str, dict or Scheduler
        ``None`` gives ``ConstantScheduler(lr)``. Names ignore case and ``_`` (``"constant"``,
        ``"exponential"``, ``"noam"``, ``"king"`` or the class names). A Scheduler is returned as
        is.
    lr : float, optional
        The base learning rate. It fills in ``ConstantScheduler``'s ``lr`` or the ``initial_lr``
        of the exponential and King schedulers when a name or dict leaves it out. Default 0.01.

    Returns
    -------
    Scheduler

    Examples
    --------
    >>> from anyml.schedulers import get_scheduler
    >>> get_scheduler(None, lr=0.1)
    ConstantScheduler(lr=0.1)
    >>> get_scheduler("king", lr=0.1)
    KingScheduler(initial_lr=0.1, patience=1000, decay=0.99)
    """
    if spec is None:
        return ConstantScheduler(0.01 if lr is None else lr)
    if not isinstance(spec, str | Mapping):
        return SCHEDULERS.get(spec)
    name, params = SCHEDULERS.split(spec)
    field = getattr(SCHEDULERS.lookup(name), "_lr_field", None)
    if lr is not None and field is not None and field not in params:
        params[field] = lr
    return SCHEDULERS.build(name, params)
