"""CuPy's native kernels: registered, and equal to the pure functions they replace.

No CUDA device is needed: the wrappers are called on NumPy arrays with a stand-in for
``cupyx.scipy.special`` made of SciPy's functions (the same definitions CuPy implements), which
checks the wrapping (arguments, dtype handling, hand-back) but not CuPy itself; the GPU checks do that.
"""

from __future__ import annotations

import ast
import sys
import types

import numpy as np
import pytest

from anyml.backend import CupyBackend
from anyml.backend import _cupy_fast as fast
from anyml.functional import special


@pytest.fixture
def fake_cupyx(monkeypatch):
    scipy_special = pytest.importorskip("scipy.special")
    module = types.ModuleType("cupyx.scipy.special")
    module.erf, module.erfc = scipy_special.erf, scipy_special.erfc
    parent, scipy = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
    parent.scipy, scipy.special = scipy, module
    for name, mod in (("cupyx", parent), ("cupyx.scipy", scipy), ("cupyx.scipy.special", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    return module


def test_the_cupy_backend_registers_erf_and_erfc():
    assert CupyBackend.fast_paths["erf"] is fast.erf
    assert CupyBackend.fast_paths["erfc"] is fast.erfc


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_wrappers_equal_the_pure_functions(fake_cupyx, dtype):
    x = np.linspace(-6, 6, 241).astype(dtype)
    for native, pure in ((fast.erf, special.erf.pure), (fast.erfc, special.erfc.pure)):
        got = native(x)
        assert got.dtype == x.dtype
        rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-15)
        np.testing.assert_allclose(got, pure(x, np), rtol=rtol, atol=atol)


def test_integer_input_is_handed_back(fake_cupyx):
    assert fast.erf(np.arange(3)) is NotImplemented
    assert fast.erfc(np.arange(3)) is NotImplemented


@pytest.fixture
def fake_fuse(monkeypatch):
    """``cupy.fuse`` as the identity: the fused functions run as written, on NumPy arrays."""
    module = types.ModuleType("cupy")
    module.fuse = lambda *args, **kwargs: (lambda fn: fn)
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(fast, "_FUSED", {})
    return module


def test_the_cupy_backend_registers_the_normalization_kernels():
    for name in ("batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward"):
        assert CupyBackend.fast_paths[name] is getattr(fast, name)


@pytest.mark.parametrize(("kind", "shape"), [("batch", (7, 5)), ("batch", (3, 4, 5, 2)),
                                             ("layer", (6, 10)), ("layer", (3, 4, 5, 2))])
def test_the_normalization_kernels_equal_the_pure_functions(fake_fuse, kind, shape):
    from anyml.functional import norm

    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape) * 3.0 + 1.0
    dY = rng.standard_normal(shape)
    p_shape = shape[-1:] if kind == "batch" else shape[1:]
    g, b = rng.uniform(0.5, 1.5, p_shape), rng.standard_normal(p_shape)
    forward = getattr(fast, f"{kind}norm_forward")
    backward = getattr(fast, f"{kind}norm_backward")
    pure_forward = getattr(norm, f"{kind}norm_forward").pure
    pure_backward = getattr(norm, f"{kind}norm_backward").pure
    Y, cache = forward(X, g, b, 1e-5)
    Y0, cache0 = pure_forward(X, g, b, 1e-5, xp=np)
    np.testing.assert_allclose(Y, Y0, rtol=1e-12, atol=1e-12)
    for stat in ("mean", "var", "inv_std"):
        np.testing.assert_allclose(getattr(cache, stat), getattr(cache0, stat), rtol=1e-12)
    for got, want in zip(backward(dY, cache), pure_backward(dY, cache0, xp=np), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for got, want in zip(backward(dY, cache0), pure_backward(dY, cache, xp=np), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)  # either cache serves either


def test_what_the_normalization_kernels_do_not_cover_is_handed_back(fake_fuse):
    from anyml.functional import norm

    X, g, b = np.ones((4, 3)), np.ones(3), np.zeros(3)
    assert fast.batchnorm_forward(X, g, b, reduce=lambda arrays: arrays) is NotImplemented
    assert fast.batchnorm_forward(X, g, b, running_mean=g, running_var=g) is NotImplemented
    assert fast.layernorm_forward(np.ones(3), g, b) is NotImplemented
    assert fast.layernorm_forward(np.ones((0, 3)), g, b) is NotImplemented
    _, running = norm.batchnorm_forward.pure(X, g, b, running_mean=b, running_var=g, xp=np)
    assert fast.batchnorm_backward(X, running) is NotImplemented
    assert fast.layernorm_backward(X, object()) is NotImplemented


# ------------------------------------------------------------------------------ fused elementwise
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_FUNCTIONS = {"sqrt": np.sqrt, "tanh": np.tanh}


def _evaluate(node: ast.expr, scope: dict) -> np.ndarray:
    """The value of one C arithmetic expression of a kernel, on NumPy arrays: names, numbers,
    ``+ - * /``, unary minus and calls of sqrt/tanh. Anything else fails the test (no ``eval``)."""
    if isinstance(node, ast.Name):
        return scope[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return scope["T"](node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left, scope), _evaluate(node.right, scope))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return np.negative(_evaluate(node.operand, scope))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        (argument,) = node.args
        return _FUNCTIONS[node.func.id](_evaluate(argument, scope))
    raise AssertionError(f"the stand-in kernel does not know {ast.dump(node)}")


class _StandInElementwiseKernel:
    """``cupy.ElementwiseKernel`` on NumPy: runs the operation text, statement by statement, on whole
    arrays. Each statement (``name = expression``, with C's ``T`` declarations and ``(T)`` casts
    removed) is parsed and evaluated by :func:`_evaluate`, which knows only elementwise arithmetic."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        self.ins = [p.split()[-1] for p in in_params.split(",")]
        self.outs = [p.split()[-1] for p in out_params.split(",")]
        self.statements: list[tuple[str, ast.expr]] = []
        for statement in operation.split(";"):
            statement = statement.strip().replace("(T)", "")
            if statement.startswith("T "):
                statement = statement[2:]
            if statement:
                (assign,) = ast.parse(statement).body
                assert isinstance(assign, ast.Assign) and isinstance(assign.targets[0], ast.Name)
                self.statements.append((assign.targets[0].id, assign.value))
        self.name = name

    def __call__(self, *args):
        assert len(args) == len(self.ins), self.name
        dtype = next(a.dtype for a in args if isinstance(a, np.ndarray))
        scope = {"T": dtype.type}
        for name, value in zip(self.ins, args, strict=True):
            scope[name] = value if isinstance(value, np.ndarray) else dtype.type(value)
        for target, expression in self.statements:
            scope[target] = _evaluate(expression, scope)
        outs = tuple(np.asarray(scope[name], dtype=dtype) for name in self.outs)
        return outs[0] if len(outs) == 1 else outs


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.ElementwiseKernel = _StandInElementwiseKernel
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(fast, "_KERNELS", {})
    return module


FUSED = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "lstm_cell_update"]


def test_the_cupy_backend_registers_the_fused_kernels():
    for name in FUSED:
        assert CupyBackend.fast_paths[name] is getattr(fast, name)


def test_the_emulated_device_runs_the_pure_paths_they_replace():
    import anyml
    from anyml.backend import fast_path

    be = anyml.make_backend("gpulike", seed=0)
    x = be.asarray(np.ones((2, 8)))
    for name in FUSED:
        assert fast_path(name, x) is None, name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_optimizer_kernels_equal_the_pure_functions(fake_cupy, dtype):
    from anyml import optimizers as O  # noqa: N812

    rng = np.random.default_rng(0)
    p, g = (rng.standard_normal((5, 4)).astype(dtype) for _ in range(2))
    s1, s2 = (np.abs(rng.standard_normal((5, 4))).astype(dtype) for _ in range(2))
    cases = [
        ("sgd_step", (p, g, None, 0.1, 0.0)),
        ("sgd_step", (p, g, s1, 0.1, 0.9)),
        ("adagrad_step", (p, g, s1, 0.05, 1e-7)),
        ("rmsprop_step", (p, g, s1, 0.01, 0.9, 1e-7)),
        ("adam_step", (p, g, s1, s2, 0.01, 0.9, 0.999, 1e-7, 3)),
        ("adam_step", (p, g, s1, s2, 0.01, 0.8, 0.99, 1e-5, 1, 0.1)),
    ]
    rtol, atol = (2e-6, 1e-7) if dtype == "float32" else (1e-13, 1e-15)
    for name, args in cases:
        got = getattr(fast, name)(*args)
        want = getattr(O, name).pure(*args)
        for a, b in zip(got, want, strict=True):
            if b is None:
                assert a is None, name
                continue
            assert a.dtype == np.dtype(dtype), name
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_lstm_cell_equals_the_pure_function(fake_cupy, dtype):
    from anyml.functional import recurrent

    rng = np.random.default_rng(1)
    T = np.tanh(rng.standard_normal((3, 20))).astype(dtype)
    C_prev = rng.standard_normal((3, 5)).astype(dtype)
    got = fast.lstm_cell_update(T, C_prev)
    want = recurrent.lstm_cell_update.pure(T, C_prev)
    rtol, atol = (2e-6, 1e-7) if dtype == "float32" else (1e-13, 1e-15)
    for a, b, name in zip(got, want, ("C", "A"), strict=True):
        assert a.dtype == np.dtype(dtype) and a.shape == (3, 5), name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


def test_fused_kernels_hand_integers_back(fake_cupy):
    i = np.arange(4)
    assert fast.sgd_step(i, i, None, 0.1, 0.0) is NotImplemented
    assert fast.adam_step(i, i, i, i, 0.1, 0.9, 0.9, 1e-7, 1) is NotImplemented
    assert fast.lstm_cell_update(np.arange(8).reshape(1, 8), np.arange(2).reshape(1, 2)) \
        is NotImplemented
