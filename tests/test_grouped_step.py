"""The grouped (multi-tensor) optimizer step gives exactly the per-layer result, state included."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml import checkpoint
from anyml.layers.dense import FullyConnected
from anyml.model import Sequential
from anyml.optimizers import SGD, Adam, GroupedStep, RMSProp, get_optimizer

SPECS = [
    "SGD(lr=0.05)",
    "SGD(lr=0.05, momentum=0.9)",
    "SGD(lr=0.05, momentum=0.9, clip_norm=0.3)",
    "AdaGrad(lr=0.05)",
    "RMSProp(lr=0.01, decay=0.8)",
    "Adam(lr=0.01)",
    "Adam(lr=0.01, clip_norm=0.5)",
    "Adam(lr=0.01, lr_scheduler=ExponentialScheduler(initial_lr=0.01, stage_length=2, decay=0.5))",
    "Adam(lr=0.01, lr_scheduler=KingScheduler(initial_lr=0.01, patience=1, decay=0.5))",
    "AdamW(lr=0.01, weight_decay=0.1)",
]


def _model(be: anyml.Backend, spec: str) -> Sequential:
    return Sequential([FullyConnected(6, act_fn="Tanh", backend=be),
                       FullyConnected(5, act_fn="ReLU", backend=be),
                       FullyConnected(3, backend=be)], loss="SquaredError()", optimizer=spec)


def _per_layer(model: Sequential) -> Sequential:
    """The same model made to update layer by layer (the grouped step turned off)."""
    model._grouped_update = lambda cur_loss: (set(), [])  # type: ignore[method-assign]
    return model


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 4)), rng.standard_normal((8, 3))


def _host(be: anyml.Backend, x: object) -> object:
    return x if isinstance(x, int | float) else be.to_host(x)


def _assert_same(be: anyml.Backend, a: Sequential, b: Sequential) -> None:
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        assert set(la.parameters) == set(lb.parameters)
        for name in la.parameters:
            np.testing.assert_array_equal(_host(be, la.parameters[name]),
                                          _host(be, lb.parameters[name]),
                                          err_msg=f"layer {i} parameter {name}")
        assert la.optimizer.cur_step == lb.optimizer.cur_step
        assert la.optimizer.state() == lb.optimizer.state()
        assert set(la.optimizer.cache) == set(lb.optimizer.cache)
        for name, state in la.optimizer.cache.items():
            other = lb.optimizer.cache[name]
            assert set(state) == set(other)
            for key, value in state.items():
                np.testing.assert_array_equal(_host(be, value), _host(be, other[key]),
                                              err_msg=f"layer {i} state {name}/{key}")


def _step(model: Sequential, X: object, y: object, cur_loss: bool) -> None:
    model.train_on_batch(X, y, cur_loss=cur_loss)


@pytest.mark.parametrize("spec", SPECS)
def test_grouped_equals_per_layer(make_backend_for, spec: str) -> None:
    for dtype in ("float32", "float64"):
        be = make_backend_for(dtype)
        grouped = _model(be, spec)
        single = _per_layer(_model(make_backend_for(dtype), spec))
        king = "King" in spec
        for step in range(5):
            X, y = _data(step)
            _step(grouped, X, y, king)
            _step(single, X, y, king)
            _assert_same(be, grouped, single)
        assert "_grouped_step" in grouped.__dict__
        assert grouped.layers[0].optimizer.cur_step == 5


@pytest.mark.parametrize("spec", ["Adam(lr=0.01)", "RMSProp(lr=0.01)",
                                  "SGD(lr=0.05, momentum=0.9)"])
def test_a_per_layer_update_in_between(make_backend_for, spec: str) -> None:
    """A layer updated on its own between grouped steps (its state replaced) is picked up."""
    be = make_backend_for("float64")
    grouped, single = _model(be, spec), _per_layer(_model(make_backend_for("float64"), spec))
    for step in range(4):
        X, y = _data(step)
        for model in (grouped, single):
            if step == 2:  # forward/backward, then layer 1 alone, then the rest
                model.forward(be.asarray(X))
                model.backward(be.asarray(np.ones((8, 3))))
                model.layers[1].update(check_finite=False)
                model.update()
            else:
                _step(model, X, y, False)
        _assert_same(be, grouped, single)


def test_checkpoint_round_trip_continues_exactly(make_backend_for, tmp_path) -> None:
    be = make_backend_for("float64")
    grouped, single = _model(be, "Adam(lr=0.01)"), _per_layer(_model(make_backend_for("float64"),
                                                                        "Adam(lr=0.01)"))
    for step in range(2):
        X, y = _data(step)
        _step(grouped, X, y, False)
        _step(single, X, y, False)
    path = tmp_path / "model.safetensors"
    checkpoint.save(grouped, path)
    restored = checkpoint.load(path, backend=be)
    _assert_same(be, restored, single)
    for step in range(2, 5):
        X, y = _data(step)
        _step(restored, X, y, False)
        _step(single, X, y, False)
        _assert_same(be, restored, single)


def test_groups_split_by_configuration_and_step(backend64: anyml.Backend) -> None:
    """Optimizers of different classes, rates or step counts are grouped apart; same result."""
    rng = np.random.default_rng(0)
    protos = [Adam(lr=0.01), Adam(lr=0.01), Adam(lr=0.02), RMSProp(), SGD(lr=0.1, momentum=0.5),
              SGD(lr=0.1)]
    shapes = {"W": (3, 4), "b": (4,)}
    opts_a = [get_optimizer(p) for p in protos]
    opts_b = [get_optimizer(p) for p in protos]
    params_a = [{k: backend64.from_host(rng.standard_normal(s)) for k, s in shapes.items()}
                for _ in protos]
    params_b = [dict(p) for p in params_a]
    grouped = GroupedStep()
    for step in range(4):
        grads = [{k: backend64.from_host(rng.standard_normal(s)) for k, s in shapes.items()}
                 for _ in protos]
        if step == 1:  # the first optimizer gets a third parameter: its step count differs
            for params in (params_a[0], params_b[0]):
                params["c"] = backend64.from_host(np.ones(5))
        if step >= 1:
            grads[0]["c"] = backend64.from_host(rng.standard_normal(5))
        updated = grouped.apply(list(zip(opts_a, params_a, grads, strict=True)))
        assert sum(int(np.prod(u.shape)) for u in updated) == sum(
            int(np.prod(g.shape)) for gs in grads for g in gs.values())
        for opt, params, gs in zip(opts_b, params_b, grads, strict=True):
            for name, g in gs.items():
                params[name] = opt(params[name], g, name)
            opt.step()
        for pa, pb, oa, ob in zip(params_a, params_b, opts_a, opts_b, strict=True):
            for name in pa:
                np.testing.assert_array_equal(backend64.to_host(pa[name]),
                                              backend64.to_host(pb[name]))
            for name, state in oa.cache.items():
                for key, value in state.items():
                    np.testing.assert_array_equal(_host(backend64, value),
                                                  _host(backend64, ob.cache[name][key]))


def test_grouped_step_names_a_bad_gradient_shape(backend: anyml.Backend) -> None:
    opt = Adam()
    params = {"W": backend.from_host(np.ones((2, 3)))}
    with pytest.raises(ValueError, match="Adam: the gradient of 'W'"):
        GroupedStep().apply([(opt, params, {"W": backend.from_host(np.ones((3, 2)))})])


@pytest.mark.parametrize("spec", ["Adam(lr=0.01)", "SGD(lr=0.05, momentum=0.9, clip_norm=0.3)"])
def test_flat_gradients_and_parameters_reused_or_rebuilt(make_backend_for, spec: str) -> None:
    """The grouped step takes the flushed flat gradient (and the flat parameters) back while every
    gradient and parameter is still its view; gradients accumulated over two passes, a gradient or
    parameter replaced, or flushed by the layer between steps all give the per-layer result."""
    be = make_backend_for("float64")
    grouped, single = _model(be, spec), _per_layer(_model(make_backend_for("float64"), spec))
    for step in range(6):
        X, y = _data(step)
        for model in (grouped, single):
            if step == 2:  # two passes accumulated before one update
                for half in (slice(0, 4), slice(4, 8)):
                    out = model.forward(be.asarray(X[half]))
                    model.backward(out - be.asarray(y[half]))
                model.update()
                continue
            if step == 3:  # a gradient replaced (not in place), a parameter too
                layer = model.layers[1]
                layer.gradients["W"] = layer.gradients["W"] + 0.0
                layer.parameters["b"] = layer.parameters["b"] * 1.0
            if step == 4:  # a layer flushed on its own
                model.layers[0].flush_gradients()
            _step(model, X, y, False)
        _assert_same(be, grouped, single)
    grads = grouped.layers[0].gradients
    assert all(not np.any(be.to_host(g)) for g in grads.values())
