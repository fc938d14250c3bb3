"""Schedulers: formulas at chosen steps, King's plateau rule, specs and errors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from anyml.schedulers import (
    SCHEDULERS,
    ConstantScheduler,
    ExponentialScheduler,
    KingScheduler,
    NoamScheduler,
    Scheduler,
    get_scheduler,
)


@pytest.mark.parametrize("step", [0, 1, 17, 10_000])
def test_constant(step: int) -> None:
    assert ConstantScheduler()(step) == 0.01
    assert ConstantScheduler(lr=0.3).learning_rate(step, cur_loss=5.0) == 0.3


@pytest.mark.parametrize(("step", "smooth", "stairs"), [
    (0, 0.2, 0.2), (50, 0.2 * 0.5**0.5, 0.2), (99, 0.2 * 0.5**0.99, 0.2), (100, 0.1, 0.1),
    (150, 0.2 * 0.5**1.5, 0.1), (250, 0.2 * 0.5**2.5, 0.05),
])
def test_exponential(step: int, smooth: float, stairs: float) -> None:
    kw = {"initial_lr": 0.2, "stage_length": 100, "decay": 0.5}
    assert ExponentialScheduler(**kw)(step) == pytest.approx(smooth, rel=1e-14)
    assert ExponentialScheduler(staircase=True, **kw)(step) == pytest.approx(stairs, rel=1e-14)


def test_exponential_defaults() -> None:
    sched = ExponentialScheduler()
    assert sched(0) == 0.01
    assert sched(500) == pytest.approx(0.001, rel=1e-14)


@pytest.mark.parametrize("step", [0, 1, 99, 3998, 3999, 4000, 20_000])
def test_noam(step: int) -> None:
    s = step + 1
    expected = 512**-0.5 * min(s**-0.5, s * 4000**-1.5)
    assert NoamScheduler()(step) == pytest.approx(expected, rel=1e-14)
    assert NoamScheduler(model_dim=64, scale_factor=2.0, warmup_steps=10)(step) == pytest.approx(
        2.0 * 64**-0.5 * min(s**-0.5, s * 10**-1.5), rel=1e-14)


def test_noam_warms_up_then_decays() -> None:
    sched = NoamScheduler(warmup_steps=100)
    rates = [sched(t) for t in range(300)]
    assert rates[0] > 0.0
    assert int(np.argmax(rates)) == 99  # s = step + 1 peaks at s = warmup_steps
    assert all(np.diff(rates[:100]) > 0)
    assert all(np.diff(rates[100:]) < 0)


def _run_king(losses, **kw) -> list[float]:
    sched = KingScheduler(**kw)
    return [sched(step, loss) for step, loss in enumerate(losses)]


def test_king_decays_on_a_noisy_plateau() -> None:
    rng = np.random.default_rng(0)
    losses = 1.0 + 0.01 * rng.standard_normal(200)
    rates = _run_king(losses, initial_lr=0.1, patience=20, decay=0.5)
    assert rates[0] == 0.1
    assert rates[20] == 0.1  # needs more than `patience` steps of evidence first
    assert rates[-1] < 0.1 * 0.5**3
    # Every change is one factor of `decay`.
    changes = [b / a for a, b in itertools.pairwise(rates) if a != b]
    assert changes
    assert changes == pytest.approx([0.5] * len(changes), rel=1e-15)


def test_king_decays_on_a_flat_loss() -> None:
    rates = _run_king([2.0] * 60, initial_lr=1.0, patience=20, decay=0.9)
    assert rates[19] == 1.0
    assert rates[20] == pytest.approx(0.9)
    assert rates[-1] < 0.9


def test_king_keeps_the_rate_while_the_loss_falls() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(600)
    losses = 10.0 - 0.01 * steps + 0.01 * rng.standard_normal(600)
    assert set(_run_king(losses, initial_lr=0.1, patience=20, decay=0.5)) == {0.1}


def test_king_ignores_spikes_only_with_both_counts() -> None:
    # A falling loss with rare large spikes: the robust count ignores them, so no decay.
    rng = np.random.default_rng(2)
    losses = 10.0 - 0.01 * np.arange(400) + 0.001 * rng.standard_normal(400)
    losses[::37] += 50.0
    sched = KingScheduler(initial_lr=0.1, patience=30, decay=0.5)
    plain, robust = [], []
    for step, loss in enumerate(losses):
        assert sched(step, loss) == 0.1
        plain.append(sched.steps_without_decrease())
        robust.append(sched.steps_without_decrease(robust=True))
    assert max(plain) > 30  # the spikes alone would have triggered a decay
    assert max(robust) <= 30


def test_king_history_and_repeated_step() -> None:
    sched = KingScheduler(patience=9)
    assert sched.history.maxlen == 11  # ceil(1.1 * (patience + 1))
    sched(0, 1.0)
    sched(0, 5.0)  # the same step again: not recorded twice
    assert list(sched.history) == [1.0]
    sched.reset()
    assert len(sched.history) == 0
    assert sched.current_lr == sched.initial_lr


def test_king_needs_the_loss() -> None:
    with pytest.raises(ValueError, match="cur_loss"):
        KingScheduler()(0)


SCHEDS = [ConstantScheduler(), ConstantScheduler(lr=0.5), ExponentialScheduler(),
          ExponentialScheduler(initial_lr=0.1, stage_length=10, staircase=True, decay=0.3),
          NoamScheduler(), NoamScheduler(model_dim=16, scale_factor=0.5, warmup_steps=7),
          KingScheduler(), KingScheduler(initial_lr=1e-3, patience=5, decay=0.5)]


@pytest.mark.parametrize("sched", SCHEDS, ids=str)
def test_string_round_trip(sched: Scheduler) -> None:
    assert get_scheduler(str(sched)) == sched
    assert get_scheduler(sched.hyperparameters) == sched
    assert get_scheduler(sched) is sched


def test_every_registered_class_is_covered() -> None:
    assert {type(s).__name__ for s in SCHEDS} == set(SCHEDULERS.names)


@pytest.mark.parametrize(("name", "cls"), [
    ("constant", ConstantScheduler), ("exponential", ExponentialScheduler), ("noam", NoamScheduler),
    ("king", KingScheduler), ("KingScheduler", KingScheduler), ("CONSTANT", ConstantScheduler),
])
def test_aliases(name: str, cls: type) -> None:
    assert type(get_scheduler(name)) is cls


def test_get_scheduler_fills_in_lr() -> None:
    assert get_scheduler() == ConstantScheduler(0.01)
    assert get_scheduler(None, lr=0.2) == ConstantScheduler(0.2)
    assert get_scheduler("constant", lr=0.2) == ConstantScheduler(0.2)
    assert get_scheduler("king", lr=0.2) == KingScheduler(initial_lr=0.2)
    assert get_scheduler({"id": "exponential"}, lr=0.2) == ExponentialScheduler(initial_lr=0.2)
    assert get_scheduler("ConstantScheduler(lr=0.5)", lr=0.2) == ConstantScheduler(0.5)
    assert get_scheduler("noam", lr=0.2) == NoamScheduler()


def test_unknown_name_is_named() -> None:
    with pytest.raises(ValueError, match="'cosine'"):
        get_scheduler("cosine")


@pytest.mark.parametrize(("bad", "word"), [
    (lambda: ConstantScheduler(lr=-1.0), "lr"),
    (lambda: ExponentialScheduler(stage_length=0), "stage_length"),
    (lambda: ExponentialScheduler(stage_length=2.5), "stage_length"),
    (lambda: ExponentialScheduler(decay=0.0), "decay"),
    (lambda: ExponentialScheduler(staircase="yes"), "staircase"),
    (lambda: NoamScheduler(model_dim=0), "model_dim"),
    (lambda: NoamScheduler(warmup_steps=-5), "warmup_steps"),
    (lambda: KingScheduler(patience=0), "patience"),
    (lambda: KingScheduler(decay=1.5), "decay"),
    (lambda: get_scheduler("KingScheduler(decay=-0.5)"), "decay"),
    (lambda: get_scheduler("ConstantScheduler(rate=0.5)"), "ConstantScheduler"),
])
def test_bad_arguments(bad, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        bad()


def test_bad_spec_type() -> None:
    with pytest.raises(TypeError):
        get_scheduler(0.1)


def test_rates_are_host_floats() -> None:
    for sched in SCHEDS:
        rate = sched(3, cur_loss=1.0)
        assert type(rate) is float
        assert math.isfinite(rate)


# ---------------------------------------------------------------------------- saved state
@pytest.mark.parametrize("sched", [s for s in SCHEDS if not isinstance(s, KingScheduler)], ids=str)
def test_stateless_schedulers_have_an_empty_state(sched: Scheduler) -> None:
    sched(3, cur_loss=1.0)
    assert sched.state() == {}
    sched.load_state({})
    with pytest.raises(ValueError, match=type(sched).__name__):
        sched.load_state({"current_lr": 0.1})


def test_king_state_round_trips_and_continues_identically() -> None:
    rng = np.random.default_rng(5)
    losses = list(1.0 + 0.01 * rng.standard_normal(120))
    kw = {"initial_lr": 0.1, "patience": 10, "decay": 0.5}
    original = KingScheduler(**kw)
    rates = [original(step, loss) for step, loss in enumerate(losses[:70])]
    assert original.current_lr < 0.1  # it has decayed by now
    state = original.state()
    assert json.loads(json.dumps(state)) == state
    assert state == {"current_lr": original.current_lr, "history": list(original.history),
                     "last_step": 69}
    resumed = KingScheduler(**kw)
    resumed.load_state(json.loads(json.dumps(state)))
    assert resumed(69, 123.0) == rates[-1]  # the step already recorded is not recorded twice
    tail = list(enumerate(losses))[70:]
    assert [resumed(t, loss) for t, loss in tail] == [original(t, loss) for t, loss in tail]
    assert list(resumed.history) == list(original.history)


def test_king_load_state_keeps_the_newest_losses() -> None:
    sched = KingScheduler(patience=2)  # keeps ceil(1.1 * 3) = 4 losses
    sched.load_state({"current_lr": 0.5, "history": [1, 2, 3, 4, 5, 6], "last_step": None})
    assert list(sched.history) == [3.0, 4.0, 5.0, 6.0]
    assert sched.current_lr == 0.5
    sched.reset()
    assert sched.current_lr == 0.01 and len(sched.history) == 0


@pytest.mark.parametrize(("state", "word"), [
    ({"current_lr": 0.1, "history": []}, "entries"),
    ({"current_lr": 0.1, "history": [], "last_step": 1, "extra": 0}, "entries"),
    ([0.1, []], "entries"),
    ({"current_lr": -0.1, "history": [], "last_step": None}, "current_lr"),
    ({"current_lr": "fast", "history": [], "last_step": None}, "current_lr"),
    ({"current_lr": 0.1, "history": "1, 2", "last_step": None}, "history"),
    ({"current_lr": 0.1, "history": [1.0, None], "last_step": None}, "history"),
    ({"current_lr": 0.1, "history": [], "last_step": -1}, "last_step"),
    ({"current_lr": 0.1, "history": [], "last_step": 1.5}, "last_step"),
])
def test_king_load_state_refuses_bad_states(state, word: str) -> None:
    sched = KingScheduler()
    with pytest.raises(ValueError, match=f"KingScheduler: .*{word}"):
        sched.load_state(state)
    assert sched.current_lr == 0.01 and len(sched.history) == 0
