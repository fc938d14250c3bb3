"""Losses: against PyTorch, finite differences, spec round-trips, stability and errors."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.losses import LOSSES, CrossEntropy, Loss, SquaredError, VAELoss, get_loss
from anyml.testing import assert_close, numerical_gradient

SPECS = [SquaredError(), SquaredError("mean"), CrossEntropy(), CrossEntropy(from_logits=True),
         CrossEntropy(True, "mean"), VAELoss(), VAELoss("sum")]


def _host(shape, seed=0, dtype="float64"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _onehot(labels, n_classes, dtype="float64"):
    return np.eye(n_classes, dtype=dtype)[labels]


def _t(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------------------- specs
@pytest.mark.parametrize("loss", SPECS, ids=str)
def test_spec_round_trip(loss):
    assert get_loss(str(loss)) == loss
    assert get_loss(loss.hyperparameters) == loss
    assert get_loss(loss) is loss


@pytest.mark.parametrize(("text", "expected"), [
    ("squared_error", SquaredError()),
    ("cross entropy", CrossEntropy()),
    ("crossentropy(from_logits=True)", CrossEntropy(from_logits=True)),
    ("VAELoss(reduction='sum')", VAELoss("sum")),
])
def test_get_loss_by_name(text, expected):
    assert get_loss(text) == expected


def test_registry_lists_the_losses():
    assert LOSSES.names == ["SquaredError", "CrossEntropy", "VAELoss"]


@pytest.mark.parametrize(("spec", "error", "match"), [
    ("Hinge", ValueError, "unknown loss 'Hinge'"),
    ("CrossEntropy(logits=True)", ValueError, "cannot build loss CrossEntropy"),
    ("SquaredError(reduction='avg')", ValueError, "reduction must be 'sum' or 'mean'"),
    (None, ValueError, "expected a loss"),
    (3, TypeError, "expected a loss"),
])
def test_get_loss_errors(spec, error, match):
    with pytest.raises(error, match=match):
        get_loss(spec)


def test_from_logits_must_be_a_bool():
    with pytest.raises(TypeError, match="CrossEntropy: from_logits"):
        CrossEntropy(from_logits="yes")


# ---------------------------------------------------------------------------- against torch
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_squared_error_matches_torch(backend, reduction):
    torch = pytest.importorskip("torch")
    y, y_pred = _host((4, 3), 0, backend.dtype_name), _host((4, 3), 1, backend.dtype_name)
    loss = SquaredError(reduction)
    value = loss.loss(backend.asarray(y), backend.asarray(y_pred))
    grad = loss.grad(backend.asarray(y), backend.asarray(y_pred))
    yt, pt = _t(y), _t(y_pred)
    ref = 0.5 * torch.nn.functional.mse_loss(pt, yt, reduction="sum") / (4 if reduction == "mean" else 1)
    ref.backward()
    assert value.shape == ()
    assert_close(value, ref.detach().numpy(), backend=backend)
    assert_close(grad, pt.grad.numpy(), backend=backend)


def test_squared_error_grad_through_activation(backend):
    torch = pytest.importorskip("torch")
    y, z = _host((3, 4), 2, backend.dtype_name), _host((3, 4), 3, backend.dtype_name)
    act = anyml.activations.get_activation("Tanh")
    zb = backend.asarray(z)
    grad = SquaredError().grad(backend.asarray(y), act(zb), zb, "Tanh")
    zt = _t(z)
    (0.5 * torch.nn.functional.mse_loss(torch.tanh(zt), _t(y), reduction="sum")).backward()
    assert_close(grad, zt.grad.numpy(), backend=backend)


@pytest.mark.parametrize("labels_as", ["onehot", "int"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_from_logits_matches_torch(backend, labels_as, reduction):
    torch = pytest.importorskip("torch")
    labels = np.array([0, 2, 1, 4, 2])
    z = 3 * _host((5, 5), 4, backend.dtype_name)
    y = _onehot(labels, 5, backend.dtype_name) if labels_as == "onehot" else labels
    loss = CrossEntropy(from_logits=True, reduction=reduction)
    value = loss.loss(backend.asarray(y), backend.asarray(z))
    grad = loss.grad(backend.asarray(y), backend.asarray(z))
    zt = _t(z)
    ref = torch.nn.functional.cross_entropy(zt, _t(_onehot(labels, 5)).detach(), reduction="sum")
    ref = ref / (5 if reduction == "mean" else 1)
    ref.backward()
    assert_close(value, ref.detach().numpy(), backend=backend)
    assert_close(grad, zt.grad.numpy(), backend=backend)


def test_cross_entropy_of_probabilities_matches_torch(backend):
    """On softmax outputs, the loss is torch's cross-entropy of the logits and the gradient is the
    gradient wrt. those logits."""
    torch = pytest.importorskip("torch")
    labels = np.array([1, 0, 3])
    z = _host((3, 4), 5)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(backend.dtype_name)
    y = _onehot(labels, 4, backend.dtype_name)
    loss = CrossEntropy()
    value = loss.loss(backend.asarray(y), backend.asarray(p))
    grad = loss.grad(backend.asarray(y), backend.asarray(p))
    zt = _t(z)
    torch.nn.functional.cross_entropy(zt, torch.tensor(labels), reduction="sum").backward()
    ref = -np.sum(y.astype(np.float64) * np.log(p.astype(np.float64)))
    assert_close(value, ref, backend=backend)
    assert_close(grad, p.astype(np.float64) - y, backend=backend)
    assert_close(grad, zt.grad.numpy(), backend=backend, **_loose(backend))


def _loose(backend):
    """``p`` was rounded to the backend dtype before the loss saw it; compare at that precision."""
    return {"rtol": 1e-6, "atol": 1e-7} if backend.dtype_name == "float32" else {}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_vae_loss_matches_torch(backend, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    dt = backend.dtype_name
    y = (rng.random((3, 5)) < 0.5).astype(dt)
    y_pred = rng.uniform(0.05, 0.95, (3, 5)).astype(dt)
    mean, log_var = _host((3, 2), 7, dt), (0.5 * _host((3, 2), 8)).astype(dt)
    loss = VAELoss(reduction)
    args = [backend.asarray(a) for a in (y, y_pred, mean, log_var)]
    value = loss.loss(*args)
    grads = loss.grad(*args)
    pt, mt, lt = _t(y_pred), _t(mean), _t(log_var)
    rec = torch.nn.functional.binary_cross_entropy(pt, _t(y).detach(), reduction="sum")
    kl = -0.5 * torch.sum(1 + lt - mt**2 - torch.exp(lt))
    ref = (rec + kl) / (3 if reduction == "mean" else 1)
    ref.backward()
    assert_close(value, ref.detach().numpy(), backend=backend)
    for got, want in zip(grads, (pt.grad, lt.grad, mt.grad), strict=True):  # numpy-ml's order
        assert_close(got, want.numpy(), backend=backend)


# ---------------------------------------------------------------------------- finite differences
def _fd_check(backend, f, x, analytic):
    expected = numerical_gradient(lambda h: float(f(backend.asarray(h))), x)
    np.testing.assert_allclose(anyml.to_numpy(analytic), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_squared_error_finite_differences(backend64, reduction):
    be, loss = backend64, SquaredError(reduction)
    y, y_pred = be.asarray(_host((3, 4), 0)), _host((3, 4), 1)
    _fd_check(be, lambda p: loss.loss(y, p), y_pred, loss.grad(y, be.asarray(y_pred)))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cross_entropy_finite_differences(backend64, reduction):
    be = backend64
    y = be.asarray(np.array([2, 0, 1]))
    z = _host((3, 4), 2)
    fused = CrossEntropy(from_logits=True, reduction=reduction)
    _fd_check(be, lambda v: fused.loss(y, v), z, fused.grad(y, be.asarray(z)))
    # on probabilities the gradient is wrt. the logits behind the softmax
    plain = CrossEntropy(reduction=reduction)
    _fd_check(be, lambda v: plain.loss(y, fused.probs(v)), z,
              plain.grad(y, fused.probs(be.asarray(z))))


def test_cross_entropy_soft_targets_finite_differences(backend64):
    """Rows of y need not sum to one: the gradient is p * sum(y) - y."""
    be, loss = backend64, CrossEntropy(from_logits=True)
    y = be.asarray(np.abs(_host((2, 3), 3)))
    z = _host((2, 3), 4)
    _fd_check(be, lambda v: loss.loss(y, v), z, loss.grad(y, be.asarray(z)))


def test_vae_loss_finite_differences(backend64):
    be, loss = backend64, VAELoss()
    rng = np.random.default_rng(9)
    y = be.asarray((rng.random((2, 4)) < 0.5).astype(np.float64))
    p, m, lv = rng.uniform(0.1, 0.9, (2, 4)), _host((2, 3), 10), 0.5 * _host((2, 3), 11)
    P, M, LV = be.asarray(p), be.asarray(m), be.asarray(lv)
    d_pred, d_log_var, d_mean = loss.grad(y, P, M, LV)  # numpy-ml's order
    _fd_check(be, lambda v: loss.loss(y, v, M, LV), p, d_pred)
    _fd_check(be, lambda v: loss.loss(y, P, v, LV), m, d_mean)
    _fd_check(be, lambda v: loss.loss(y, P, M, v), lv, d_log_var)


# ---------------------------------------------------------------------------- stability, dtype
def test_cross_entropy_never_takes_log_of_zero(backend):
    p = backend.asarray(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    y = backend.asarray(np.array([1, 1]))
    value = CrossEntropy().loss(y, p)
    eps = np.finfo(backend.dtype_name).eps
    assert_close(value, -np.log(eps), backend=backend)


def test_cross_entropy_from_huge_logits_is_exact(backend):
    z = backend.asarray(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]]))
    y = backend.asarray(np.array([0, 0]))
    loss = CrossEntropy(from_logits=True)
    assert_close(loss.loss(y, z), 1e4, backend=backend)
    assert_close(loss.grad(y, z), [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]], backend=backend)


def test_vae_loss_is_finite_at_saturated_outputs(backend):
    y = backend.asarray(np.array([[1.0, 0.0]]))
    p = backend.asarray(np.array([[0.0, 1.0]]))
    z = backend.asarray(np.zeros((1, 1)))
    value = VAELoss().loss(y, p, z, z)
    grads = VAELoss().grad(y, p, z, z)
    assert np.isfinite(anyml.to_numpy(value))
    assert all(np.all(np.isfinite(anyml.to_numpy(g))) for g in grads)
    assert_close(value, -2 * np.log(np.finfo(backend.dtype_name).eps), backend=backend,
                 rtol=1e-6 if backend.dtype_name == "float64" else 1e-4)


# ---------------------------------------------------------------------------- errors
def test_shape_mismatch_names_the_loss(backend):
    a, b = backend.asarray(np.zeros((2, 3))), backend.asarray(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"SquaredError: expected y of the shape of y_pred \(2, 4\)"):
        SquaredError().loss(a, b)
    with pytest.raises(ValueError, match=r"CrossEntropy: expected integer labels y of shape \(2,\)"):
        CrossEntropy().loss(backend.asarray(np.zeros((3,), dtype=np.int64)), b)


def test_array_of_another_backend_is_refused(backend):
    y = np.zeros((2, 3), dtype=backend.dtype_name)
    y_pred = backend.asarray(np.zeros((2, 3)))
    if backend.name == "numpy":
        y_pred = anyml.make_backend("array-api-strict").asarray(y_pred)
    with pytest.raises(TypeError, match="CrossEntropy: y and y_pred must be arrays of the same"):
        CrossEntropy().loss(y, y_pred)


def test_float64_target_for_float32_prediction_is_refused():
    be32, be64 = anyml.make_backend("numpy", dtype="float32"), anyml.make_backend("numpy",
                                                                                  dtype="float64")
    with pytest.raises(TypeError, match="SquaredError: expected y of dtype float32"):
        SquaredError().loss(be64.asarray(np.zeros(3)), be32.asarray(np.zeros(3)))


def test_squared_error_act_fn_needs_z():
    with pytest.raises(ValueError, match="SquaredError.grad: act_fn needs"):
        SquaredError().grad(np.zeros(2), np.ones(2), act_fn="ReLU")


def test_vae_loss_checks_the_latent_shapes(backend):
    y = backend.asarray(np.full((2, 3), 0.5))
    m = backend.asarray(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"VAELoss: expected t_mean of shape \(n_ex=2, latent\)"):
        VAELoss().loss(y, y, m, m)


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Loss().loss(np.zeros(1), np.zeros(1))


@pytest.mark.parametrize("labels_as", ["onehot", "int", "soft"])
@pytest.mark.parametrize("loss", [CrossEntropy(), CrossEntropy(True, "mean"), CrossEntropy(False, "mean"),
                                  SquaredError(), SquaredError("mean")], ids=str)
def test_loss_and_grad_equals_the_two_calls(backend, loss, labels_as):
    """What a training step takes in one call is exactly (bitwise) what loss() and grad() give."""
    labels = np.array([1, 0, 3, 3, 2])
    z = _host((5, 4), 6, backend.dtype_name)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = backend.asarray((e / e.sum(axis=1, keepdims=True)).astype(backend.dtype_name))
    if isinstance(loss, SquaredError) or labels_as == "onehot":
        y = backend.asarray(_onehot(labels, 4, backend.dtype_name))
    elif labels_as == "soft":
        y = backend.asarray(np.abs(_host((5, 4), 7, backend.dtype_name)))
    else:
        y = backend.asarray(labels)
    value, grad = loss.loss_and_grad(y, p)
    np.testing.assert_array_equal(anyml.to_numpy(value), anyml.to_numpy(loss.loss(y, p)))
    np.testing.assert_array_equal(anyml.to_numpy(grad), anyml.to_numpy(loss.grad(y, p)))
    if isinstance(loss, CrossEntropy):  # and the same as the formula with the row sums
        xp = anyml.backend.namespace_of(p)
        with backend.activate():
            target = loss.targets(y, p)
            ref = loss.probs(p) * xp.sum(target, axis=-1, keepdims=True) - target
            ref = ref if loss.reduction == "sum" else ref * (1.0 / 5)
        np.testing.assert_array_equal(anyml.to_numpy(grad), anyml.to_numpy(ref))


def test_loss_and_grad_of_vae_loss(backend):
    y = backend.asarray(np.random.default_rng(0).random((3, 4)).astype(backend.dtype_name))
    p = backend.asarray(np.random.default_rng(1).random((3, 4)).astype(backend.dtype_name))
    mean = backend.asarray(_host((3, 2), 2, backend.dtype_name))
    log_var = backend.asarray(_host((3, 2), 3, backend.dtype_name))
    loss = VAELoss()
    value, grads = loss.loss_and_grad(y, p, mean, log_var)
    np.testing.assert_array_equal(anyml.to_numpy(value), anyml.to_numpy(loss.loss(y, p, mean, log_var)))
    for a, b in zip(grads, loss.grad(y, p, mean, log_var), strict=True):
        np.testing.assert_array_equal(anyml.to_numpy(a), anyml.to_numpy(b))
