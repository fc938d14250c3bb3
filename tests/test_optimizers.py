"""Optimizers: several steps against torch.optim, clipping, state placement, schedulers, specs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import anyml
from anyml.layers.dense import FullyConnected
from anyml.optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    Optimizer,
    RMSProp,
    get_optimizer,
)
from anyml.schedulers import (
    ConstantScheduler,
    ExponentialScheduler,
    KingScheduler,
    NoamScheduler,
    Scheduler,
)
from anyml.testing import assert_close

torch = pytest.importorskip("torch")

N_STEPS = 6
SHAPES = {"W": (4, 3), "b": (3,)}

# (our optimizer, a factory of the equivalent torch optimizer)
CASES = [
    (SGD(), lambda p: torch.optim.SGD(p, lr=0.01)),
    (SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (AdaGrad(), lambda p: torch.optim.Adagrad(p, lr=0.01, eps=1e-7,
                                               initial_accumulator_value=0.0)),
    (AdaGrad(lr=0.5, eps=1e-3), lambda p: torch.optim.Adagrad(p, lr=0.5, eps=1e-3)),
    (RMSProp(), lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.9, eps=1e-7)),
    (RMSProp(lr=0.05, decay=0.5, eps=1e-4),
     lambda p: torch.optim.RMSprop(p, lr=0.05, alpha=0.5, eps=1e-4)),
    (Adam(), lambda p: torch.optim.Adam(p, lr=0.001, betas=(0.9, 0.999), eps=1e-7)),
    (Adam(lr=0.02, decay1=0.5, decay2=0.8, eps=1e-5),
     lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.5, 0.8), eps=1e-5)),
    (AdamW(), lambda p: torch.optim.AdamW(p, lr=0.001, betas=(0.9, 0.999), eps=1e-7,
                                          weight_decay=0.01)),
    (AdamW(lr=0.05, weight_decay=0.5, decay1=0.8),
     lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.999), eps=1e-7, weight_decay=0.5)),
]
IDS = [str(opt).split("(")[0] + str(i) for i, (opt, _) in enumerate(CASES)]


def _history(seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(N_STEPS)]
    return params, grads


def _torch_run(make, params, grads) -> list[dict[str, np.ndarray]]:
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for k, v in params.items()}
    opt = make(list(tensors.values()))
    out = []
    for step_grads in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(step_grads[k], dtype=torch.float64)
        opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


@pytest.mark.parametrize(("proto", "make"), CASES, ids=IDS)
def test_matches_torch_optim(backend: anyml.Backend, proto: Optimizer, make) -> None:
    host_params, host_grads = _history()
    if backend.dtype_name == "float32":  # the reference starts from the same rounded values
        host_params = {k: v.astype(np.float32).astype(np.float64) for k, v in host_params.items()}
        host_grads = [{k: v.astype(np.float32).astype(np.float64) for k, v in g.items()}
                      for g in host_grads]
    expected = _torch_run(make, host_params, host_grads)
    opt = get_optimizer(proto)
    params = {k: backend.from_host(v) for k, v in host_params.items()}
    for step, step_grads in enumerate(host_grads):
        for k in params:
            params[k] = opt(params[k], backend.from_host(step_grads[k]), k)
        opt.step()
        for k, value in params.items():
            assert_close(value, expected[step][k], backend=backend,
                         err_msg=f"{proto} step {step} param {k}")
    assert opt.cur_step == N_STEPS


@pytest.mark.parametrize(("proto", "make"), CASES, ids=IDS)
def test_state_lives_with_the_parameter(backend: anyml.Backend, proto: Optimizer, make) -> None:
    opt = get_optimizer(proto)
    param = backend.rng.normal((4, 3))
    new = opt(param, backend.rng.normal((4, 3)), "W")
    assert backend.owns(new)
    assert new.dtype == backend.dtype
    assert tuple(new.shape) == (4, 3)
    for state in opt.cache.values():
        for key, value in state.items():
            if key == "t":
                assert value == 1
            else:
                assert backend.owns(value)
                assert value.dtype == backend.dtype
                assert tuple(value.shape) == (4, 3)


def test_sgd_without_momentum_keeps_no_state(backend: anyml.Backend) -> None:
    opt = SGD()
    opt(backend.rng.normal((3,)), backend.rng.normal((3,)), "b")
    assert opt.cache == {}


@pytest.mark.parametrize("clip", [0.5, 100.0])
@pytest.mark.parametrize("proto", [SGD(lr=0.1), AdaGrad(lr=0.1), RMSProp(lr=0.1), Adam(lr=0.1)],
                         ids=str)
def test_clipping_scales_the_gradient(backend: anyml.Backend, proto: Optimizer,
                                      clip: float) -> None:
    grad_host = np.array([[3.0, -4.0], [12.0, 0.0]])  # norm 13
    param_host = np.array([[0.5, -1.0], [2.0, 0.25]])
    scaled = grad_host * min(1.0, clip / 13.0)
    clipped = type(proto)(**{**proto.spec_params(), "clip_norm": clip})
    plain = type(proto)(**proto.spec_params())
    got = clipped(backend.from_host(param_host), backend.from_host(grad_host), "W")
    want = plain(backend.from_host(param_host), backend.from_host(scaled), "W")
    assert_close(got, backend.to_host(want), backend=backend)


def test_clipping_a_zero_gradient_is_silent(backend: anyml.Backend) -> None:
    opt = SGD(clip_norm=1.0)
    param = backend.rng.normal((3,))
    out = opt(param, backend.from_host(np.zeros(3)), "b")
    assert_close(out, backend.to_host(param), backend=backend)


def test_scheduler_sets_the_rate_per_step(backend64: anyml.Backend) -> None:
    sched = ExponentialScheduler(initial_lr=0.5, stage_length=2, decay=0.25)
    opt = SGD(lr_scheduler=sched)
    param = backend64.from_host(np.ones(3))
    grad = backend64.from_host(np.full(3, 2.0))
    expected = np.ones(3)
    for step in range(4):
        param = opt(param, grad, "b")
        opt.step()
        expected = expected - sched(step) * 2.0
        assert_close(param, expected, backend=backend64)


class _CountingScheduler(ConstantScheduler):
    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)
        self.calls: list[int] = []

    def learning_rate(self, step, cur_loss=None):
        self.calls.append(step)
        return super().learning_rate(step, cur_loss)


def test_rate_is_asked_once_per_step(backend: anyml.Backend) -> None:
    sched = _CountingScheduler()
    opt = Adam(lr_scheduler=sched)
    params = {"W": backend.rng.normal((2, 2)), "b": backend.rng.normal((2,))}
    for _ in range(3):
        for k, p in params.items():
            params[k] = opt(p, p, k)
        opt.step()
    assert opt.lr_scheduler is sched
    assert sched.calls == [0, 1, 2]


def test_king_scheduler_plugged_in(backend: anyml.Backend) -> None:
    opt = SGD(lr=0.1, lr_scheduler="KingScheduler(initial_lr=0.1, patience=3, decay=0.5)")
    params = {"W": backend.rng.normal((2, 2)), "b": backend.rng.normal((2,))}
    for _ in range(6):
        for k, p in params.items():
            params[k] = opt(p, backend.xp.zeros_like(p), k, cur_loss=1.0)
        opt.step()
    # One loss per step reached the scheduler: the flat loss decays the rate at step 3 (after
    # patience + 1 losses) and clears the history, which then holds the losses of steps 4 and 5.
    # Recording a loss per parameter (two per step here) would have decayed it three times.
    assert isinstance(opt.lr_scheduler, KingScheduler)
    assert list(opt.lr_scheduler.history) == [1.0, 1.0]
    assert opt.lr_scheduler.current_lr == 0.05
    with pytest.raises(ValueError, match="cur_loss"):
        opt(params["b"], params["b"], "b")


def test_noam_by_name() -> None:
    opt = get_optimizer("Adam(lr_scheduler='noam')")
    assert opt.lr_scheduler == NoamScheduler()


def test_default_scheduler_follows_lr() -> None:
    assert SGD(lr=0.3).lr_scheduler == ConstantScheduler(lr=0.3)
    assert SGD(lr=0.3, lr_scheduler="king").lr_scheduler == KingScheduler(initial_lr=0.3)
    assert SGD(lr_scheduler={"id": "ConstantScheduler", "lr": 0.2}).lr_scheduler == \
        ConstantScheduler(0.2)


OBJECTS = [SGD(), SGD(lr=0.2, momentum=0.5, clip_norm=1.0), AdaGrad(), AdaGrad(lr=0.1, eps=1e-3),
           RMSProp(), RMSProp(decay=0.5, clip_norm=2.5), Adam(),
           Adam(lr=0.01, decay1=0.8, lr_scheduler=ExponentialScheduler(staircase=True)),
           Adam(lr_scheduler=KingScheduler(patience=10)), SGD(lr_scheduler=NoamScheduler()),
           AdamW(weight_decay=0.1, clip_norm=1.0)]


@pytest.mark.parametrize("opt", OBJECTS, ids=str)
def test_string_round_trip(opt: Optimizer) -> None:
    again = get_optimizer(str(opt))
    assert again == opt
    assert str(again) == str(opt)
    assert get_optimizer(opt.hyperparameters) == opt


def test_adam_string_form() -> None:
    assert str(Adam()) == ("Adam(lr=0.001, decay1=0.9, decay2=0.999, eps=1e-07, clip_norm=None, "
                           "lr_scheduler=ConstantScheduler(lr=0.001))")


def test_every_registered_class_is_covered() -> None:
    assert {type(o).__name__ for o in OBJECTS} == set(OPTIMIZERS.names)


@pytest.mark.parametrize(("name", "cls"), [
    ("sgd", SGD), ("adam", Adam), ("ADAM", Adam), ("adagrad", AdaGrad), ("rmsprop", RMSProp),
    ("RMSProp", RMSProp), ("adamw", AdamW), ("adam_w", AdamW),
])
def test_names(name: str, cls: type) -> None:
    assert type(get_optimizer(name)) is cls


def test_none_gives_sgd() -> None:
    assert get_optimizer(None) == SGD()


def test_object_is_copied_with_fresh_state(backend: anyml.Backend) -> None:
    original = Adam(lr=0.01, lr_scheduler=KingScheduler(patience=5))
    param = backend.rng.normal((2,))
    original(param, param, "b", cur_loss=1.0)
    original.step()
    fresh = get_optimizer(original)
    assert fresh is not original
    assert fresh == original
    assert fresh.cache == {}
    assert fresh.cur_step == 0
    assert fresh.lr_scheduler is not original.lr_scheduler
    assert len(fresh.lr_scheduler.history) == 0
    assert len(original.lr_scheduler.history) == 1
    assert set(original.cache) == {"b"}


def test_reset_clears_state(backend: anyml.Backend) -> None:
    opt = SGD(momentum=0.5, lr_scheduler="king")
    param = backend.rng.normal((2,))
    opt(param, param, "b", cur_loss=1.0)
    opt.step()
    opt.reset()
    assert opt.cache == {}
    assert opt.cur_step == 0
    assert len(opt.lr_scheduler.history) == 0


def test_map_cache_reaches_every_array(backend: anyml.Backend) -> None:
    opt = Adam()
    for name in ("W", "b"):
        p = backend.rng.normal((3,))
        opt(p, p, name)
    opt.map_cache(backend.to_host)
    for state in opt.cache.values():
        assert state["t"] == 1
        assert isinstance(state["mean"], np.ndarray)
        assert isinstance(state["var"], np.ndarray)


@pytest.mark.parametrize("proto", [SGD(momentum=0.9), AdaGrad(), RMSProp(), Adam()], ids=str)
def test_restore_from_a_numpy_ml_summary(backend64: anyml.Backend, proto: Optimizer) -> None:
    a = get_optimizer(proto)
    rng = np.random.default_rng(3)
    param = backend64.from_host(rng.normal(size=4))
    for _ in range(3):
        param = a(param, backend64.from_host(rng.normal(size=4)), "W")
        a.step()
    saved = copy.deepcopy(a.cache)
    for state in saved.values():
        for k, v in state.items():
            if k != "t":
                state[k] = backend64.to_host(v)
    if not isinstance(a, Adam):
        # numpy-ml keeps a single state array directly under the parameter name
        saved = {name: next(iter(state.values())) for name, state in saved.items()}
    summary = {"cache": saved, "hyperparameters": a.hyperparameters}
    b = get_optimizer(summary)
    assert b == a
    assert b.cache == {} and _host_arrays(vars(b)) == []  # no copy of the saved cache is kept
    b.load_cache(summary["cache"], to_array=backend64.asarray)
    grad = backend64.from_host(rng.normal(size=4))
    assert_close(b(param, grad, "W"), backend64.to_host(a(param, grad, "W")), backend=backend64)


def test_stateless_sgd_ignores_a_saved_cache() -> None:
    summary = {"cache": {"W": np.ones(3)}, "hyperparameters": SGD().hyperparameters}
    opt = get_optimizer(summary)
    opt.load_cache(summary["cache"])
    assert opt.cache == {}
    assert _host_arrays(vars(opt)) == []


@pytest.mark.parametrize(("bad", "word"), [
    (lambda: SGD(lr=-0.1), "lr"), (lambda: SGD(momentum=1.0), "momentum"),
    (lambda: SGD(momentum=-0.1), "momentum"), (lambda: SGD(clip_norm=0.0), "clip_norm"),
    (lambda: AdaGrad(eps=0.0), "eps"), (lambda: RMSProp(decay=1.0), "decay"),
    (lambda: Adam(decay1=1.5), "decay1"), (lambda: Adam(decay2=-0.5), "decay2"),
    (lambda: Adam(eps=-1e-8), "eps"), (lambda: Adam(lr="fast"), "lr"),
    (lambda: get_optimizer("Adam(lr=-1.0)"), "lr"),
    (lambda: get_optimizer("Adam(momentum=0.9)"), "Adam"),
    (lambda: get_optimizer("nesterov"), "'nesterov'"),
    (lambda: SGD(lr_scheduler="cosine"), "'cosine'"),
])
def test_bad_arguments(bad, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        bad()


def test_shape_mismatch_names_the_parameter(backend: anyml.Backend) -> None:
    with pytest.raises(ValueError, match="'W'"):
        Adam()(backend.rng.normal((2, 3)), backend.rng.normal((3, 2)), "W")


def test_bad_spec_type() -> None:
    with pytest.raises(TypeError):
        get_optimizer(0.1)


def test_scheduler_objects_are_accepted() -> None:
    sched = ExponentialScheduler()
    opt = SGD(lr_scheduler=sched)
    assert opt.lr_scheduler is sched
    assert isinstance(opt.lr_scheduler, Scheduler)


def _host_arrays(obj, where="") -> list[str]:
    """Where ``obj`` (dicts, lists, attributes of optimizers and schedulers) holds NumPy arrays."""
    if isinstance(obj, np.ndarray):
        return [where]
    if isinstance(obj, dict):
        return [w for k, v in obj.items() for w in _host_arrays(v, f"{where}.{k}")]
    if isinstance(obj, list | tuple):
        return [w for i, v in enumerate(obj) for w in _host_arrays(v, f"{where}[{i}]")]
    if isinstance(obj, Optimizer | Scheduler):
        return _host_arrays(vars(obj), where)
    return []


# ------------------------------------------------------------------ saved state: step and schedule
STATEFUL = [
    SGD(lr=0.1, lr_scheduler=ExponentialScheduler(initial_lr=0.1, stage_length=1, decay=0.5)),
    SGD(lr=0.1, momentum=0.5, lr_scheduler=KingScheduler(initial_lr=0.1, patience=3, decay=0.5)),
    Adam(lr=0.1, lr_scheduler=NoamScheduler(model_dim=4, warmup_steps=2)),
]


def _train(opt: Optimizer, backend: anyml.Backend, n_steps: int, seed: int = 0):
    """``n_steps`` updates of one parameter on a flat loss (which makes a KingScheduler decay)."""
    rng = np.random.default_rng(seed)
    param = backend.from_host(rng.normal(size=(3,)))
    for _ in range(n_steps):
        param = opt(param, backend.from_host(rng.normal(size=(3,))), "W", cur_loss=1.0)
        opt.step()
    return param


@pytest.mark.parametrize("proto", STATEFUL, ids=str)
def test_state_is_json_and_round_trips(backend64: anyml.Backend, proto: Optimizer) -> None:
    a = get_optimizer(proto)
    _train(a, backend64, 5)
    state = a.state()
    assert state["cur_step"] == 5
    assert json.loads(json.dumps(state)) == state  # plain ints, floats and lists
    b = get_optimizer(proto)
    b.load_state(json.loads(json.dumps(state)))
    assert b.cur_step == 5
    assert b.state() == state
    assert b.learning_rate(1.0) == a.learning_rate(1.0)


def test_king_state_is_the_decayed_rate_and_history(backend64: anyml.Backend) -> None:
    opt = get_optimizer(STATEFUL[1])
    _train(opt, backend64, 6)  # four flat losses make it decay once, then two more are recorded
    assert opt.state() == {"cur_step": 6, "lr_scheduler": {"current_lr": 0.05,
                                                           "history": [1.0, 1.0], "last_step": 5}}
    assert SGD().state() == {"cur_step": 0, "lr_scheduler": {}}


@pytest.mark.parametrize(("state", "match"), [
    ([1, 2], "SGD: expected a saved state"),
    ({"cur_step": 3}, r"SGD: expected a saved state with the entries \['cur_step', 'lr_scheduler'\]"),
    ({"cur_step": -1, "lr_scheduler": {}}, "SGD: the saved cur_step"),
    ({"cur_step": 2.5, "lr_scheduler": {}}, "SGD: the saved cur_step"),
    ({"cur_step": True, "lr_scheduler": {}}, "SGD: the saved cur_step"),
    ({"cur_step": 2, "lr_scheduler": {"current_lr": 0.1, "history": [], "last_step": 1}},
     "ConstantScheduler"),
])
def test_load_state_refuses_bad_states(state, match: str) -> None:
    opt = SGD()
    with pytest.raises(ValueError, match=match):
        opt.load_state(state)
    assert opt.cur_step == 0


def _layer(backend: anyml.Backend, optimizer: Optimizer) -> FullyConnected:
    layer = FullyConnected(2, optimizer=optimizer, backend=backend)
    X = backend.from_host(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    for _ in range(5):
        layer.forward(X)
        layer.backward(backend.from_host(np.ones((2, 2))))
        layer.update(cur_loss=1.0)
    return layer


@pytest.mark.parametrize(("proto", "lr"), [(STATEFUL[0], 0.003125), (STATEFUL[1], 0.05)], ids=str)
def test_set_params_keeps_the_step_and_the_schedule(backend: anyml.Backend, proto: Optimizer,
                                                     lr: float) -> None:
    layer = _layer(backend, proto)
    assert layer.optimizer.learning_rate(1.0) == pytest.approx(lr, rel=1e-15)
    fresh = FullyConnected(2, backend=backend).set_params(layer.summary())
    assert fresh.optimizer.cur_step == 5
    assert fresh.optimizer.state() == layer.optimizer.state()
    assert fresh.optimizer.learning_rate(1.0) == pytest.approx(lr, rel=1e-15)
    assert fresh.hyperparameters["optimizer"]["state"] == layer.hyperparameters["optimizer"]["state"]


def test_set_params_keeps_no_host_copy_of_the_cache(backend: anyml.Backend) -> None:
    layer = _layer(backend, Adam(lr=0.01))
    fresh = FullyConnected(2, backend=backend).set_params(layer.summary())
    assert set(fresh.optimizer.cache) == {"W", "b"}
    for state in fresh.optimizer.cache.values():
        assert all(backend.owns(state[k]) for k in ("mean", "var"))
    # the optimizer holds the state once, on the layer's backend
    held = _host_arrays({k: v for k, v in vars(fresh.optimizer).items() if k != "cache"})
    assert held == []


def test_numpy_ml_summary_without_state_loads(backend64: anyml.Backend) -> None:
    layer = _layer(backend64, Adam(lr=0.01))
    summary = layer.summary()
    del summary["hyperparameters"]["optimizer"]["state"]
    fresh = FullyConnected(2, backend=backend64).set_params(summary)
    assert fresh.optimizer.cur_step == 0  # numpy-ml's summaries do not keep the step count
    assert set(fresh.optimizer.cache) == {"W", "b"}
