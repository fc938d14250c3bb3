"""numpy-ml's own code run with anyml's layers: its objects, shapes, return values and a model.

numpy-ml (GPL-3.0) is a test-only dependency: it is imported here to run its code against anyml,
never copied into anyml. Its 0.1.2 release imports ``collections.Hashable``, gone since Python 3.10,
so the import puts that alias back first. The tests skip when numpy-ml is not installed.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib
import warnings

import numpy as np
import pytest

import anyml
from anyml import layers as L  # noqa: N812
from anyml.losses import VAELoss


@pytest.fixture(scope="module")
def nml():
    """numpy-ml's neural_nets package (skips when numpy-ml is not installed)."""
    if not hasattr(collections, "Hashable"):
        collections.Hashable = collections.abc.Hashable  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("numpy_ml")
        return importlib.import_module("numpy_ml.neural_nets")


@pytest.fixture
def be64():
    return anyml.set_backend("numpy", dtype="float64", seed=0)


def _host(a):
    return np.asarray(anyml.to_numpy(a), dtype=np.float64)


def _load(layer, nml_layer):
    """Give an anyml layer the parameters of a numpy-ml layer (numpy-ml's bias shapes load)."""
    return layer.set_params({"parameters": dict(nml_layer.parameters)})


# ------------------------------------------------------------------ padding, against numpy-ml's own
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize(("kernel", "dilation"), [(1, 0), (2, 1), (3, 0), (4, 2)])
def test_conv_padding_matches_numpy_ml(nml, be64, stride, kernel, dilation):
    rng = np.random.default_rng(stride * 10 + kernel)
    layers = nml.layers
    for n in (5, 6):
        for pad in ("same", "causal"):
            ours = L.Conv1D(2, kernel, pad=pad, stride=stride, dilation=dilation)
            theirs = layers.Conv1D(2, kernel, pad=pad, stride=stride, dilation=dilation)
            _compare_forward_backward(ours, theirs, rng.standard_normal((2, n, 3)), rng)
        ours = L.Conv2D(2, (kernel, 5 - kernel), pad="same", stride=stride, dilation=dilation)
        theirs = layers.Conv2D(2, (kernel, 5 - kernel), pad="same", stride=stride, dilation=dilation)
        _compare_forward_backward(ours, theirs, rng.standard_normal((2, n, n + 1, 3)), rng)
        if dilation == 0:
            ours = L.Deconv2D(2, (kernel, 5 - kernel), pad="same", stride=stride)
            theirs = layers.Deconv2D(2, (kernel, 5 - kernel), pad="same", stride=stride)
            _compare_forward_backward(ours, theirs, rng.standard_normal((2, n - 3, n - 2, 3)), rng)


def _compare_forward_backward(ours, theirs, X, rng):
    Y_theirs = theirs.forward(X)
    Y_ours = _load(ours, theirs).forward(anyml.get_backend().asarray(X))
    assert tuple(Y_ours.shape) == Y_theirs.shape
    np.testing.assert_allclose(_host(Y_ours), Y_theirs, rtol=1e-10, atol=1e-12)
    dY = rng.standard_normal(Y_theirs.shape)
    np.testing.assert_allclose(_host(ours.backward(anyml.get_backend().asarray(dY))),
                               theirs.backward(dY), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_host(ours.gradients["W"]), theirs.gradients["W"], rtol=1e-10,
                               atol=1e-12)


# ------------------------------------------------------------------ return values and shapes
def test_lstm_cell_returns_what_numpy_ml_returns(nml, be64):
    rng = np.random.default_rng(0)
    theirs, ours = nml.layers.LSTMCell(4), L.LSTMCell(4)
    X = rng.standard_normal((2, 3))
    At_theirs, Ct_theirs = theirs.forward(X)
    At, Ct = _load(ours, theirs).forward(be64.asarray(X))
    np.testing.assert_allclose(_host(At), At_theirs, rtol=1e-12)
    np.testing.assert_allclose(_host(Ct), Ct_theirs, rtol=1e-12)


def test_pooled_embedding_shape_and_values_match_numpy_ml(nml, be64):
    theirs = nml.layers.Embedding(3, vocab_size=7, pool="mean")
    # ids distinct within each example: numpy-ml's pooled backward counts a repeated id once
    # (``dW[ids] += ...``), where anyml (like PyTorch's embedding_bag) adds every occurrence
    ids = np.array([[1, 4, 3], [0, 6, 4]])
    Y_theirs = theirs.forward(ids)
    ours = _load(L.Embedding(3, vocab_size=7, pool="mean"), theirs)
    Y = ours.forward(be64.asarray(ids))
    assert tuple(Y.shape) == Y_theirs.shape == (2, 1, 3)
    np.testing.assert_allclose(_host(Y), Y_theirs, rtol=1e-12)
    dY = np.random.default_rng(1).standard_normal(Y_theirs.shape)
    theirs.backward(dY)
    ours.backward(be64.asarray(dY))
    np.testing.assert_allclose(_host(ours.gradients["W"]), theirs.gradients["W"], rtol=1e-12)


def test_two_dimensional_attention_matches_numpy_ml(nml, be64):
    rng = np.random.default_rng(2)
    Q, K, V = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    Y_theirs = nml.layers.DotProductAttention().forward(Q, K, V)
    Y = L.DotProductAttention().forward(*(be64.asarray(a) for a in (Q, K, V)))
    np.testing.assert_allclose(_host(Y), Y_theirs, rtol=1e-12)


def test_vae_loss_gradient_order_matches_numpy_ml(nml, be64):
    rng = np.random.default_rng(3)
    y = (rng.random((3, 6)) < 0.5).astype(float)
    p, mean, log_var = rng.uniform(0.1, 0.9, (3, 6)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    theirs = nml.losses.VAELoss().grad(y, p, mean, log_var)
    ours = VAELoss().grad(*(be64.asarray(a) for a in (y, p, mean, log_var)))
    for got, want in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(_host(got), want, rtol=1e-10)


@pytest.mark.parametrize("family", ["activations", "optimizers", "schedulers"])
def test_numpy_ml_objects_are_accepted(nml, be64, family):
    """Every numpy-ml activation, optimizer and scheduler object builds the anyml object its str()
    names, wherever anyml takes one."""
    import inspect

    from anyml.activations import get_activation
    from anyml.optimizers import get_optimizer
    from anyml.schedulers import get_scheduler

    module = getattr(nml, family)
    get = {"activations": get_activation, "optimizers": get_optimizer,
           "schedulers": get_scheduler}[family]
    seen = 0
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if not cls.__module__.startswith(module.__name__) or name.endswith(("Base", "Initializer")):
            continue
        obj = cls()
        built = get(obj)
        assert get(str(built)) == built
        assert str(built).replace(" ", "").split("(")[0].lower() in str(obj).replace(" ", "").lower()
        seen += 1
    assert seen >= 4
    layer = L.FullyConnected(2, act_fn=module.Tanh() if family == "activations" else None,
                             optimizer=nml.optimizers.Adam(lr=0.05))
    assert layer.optimizer.hyperparameters["lr"] == 0.05


# ------------------------------------------------------------------ numpy-ml's BernoulliVAE
def test_numpy_ml_bernoulli_vae_runs_on_anyml_layers(nml, be64, monkeypatch):
    """numpy-ml's own BernoulliVAE (its FullyConnected(n_out=None), its activation and optimizer
    objects, its VAELoss gradient order) trains one step on anyml's layers and computes what it
    computes on numpy-ml's layers, gradient by gradient."""
    vae = importlib.import_module("numpy_ml.neural_nets.models.vae")
    kwargs = {"T": 2, "latent_dim": 6, "enc_conv1_out_ch": 2, "enc_conv2_out_ch": 3,
              "enc_conv1_kernel_shape": (3, 3), "enc_conv2_kernel_shape": (2, 2),
              "optimizer": "RMSProp(lr=0.01)"}
    X = (np.random.default_rng(4).random((3, 9, 9, 1)) < 0.5).astype(float)

    theirs = vae.BernoulliVAE(**kwargs)
    theirs.N = 81
    np.random.seed(0)
    theirs.forward(X)
    for name in ("Conv2D", "Pool2D", "Flatten", "FullyConnected", "VAELoss"):
        monkeypatch.setattr(vae, name, getattr(L, name, VAELoss))
    ours = vae.BernoulliVAE(**kwargs)
    ours.N = 81
    assert ours.decoder["FC2"].n_out is None
    for part in ("encoder", "decoder"):
        for key, layer in getattr(ours, part).items():
            if getattr(theirs, part)[key].parameters:
                _load(layer, getattr(theirs, part)[key])
    theirs.flush_gradients()

    results = []
    for model in (theirs, ours):
        np.random.seed(1)
        X_recon = model.forward(X)
        model.backward(X, X_recon)
        results.append((_host(X_recon), {(part, key, name): _host(grad)
                                         for part in ("encoder", "decoder")
                                         for key, layer in getattr(model, part).items()
                                         for name, grad in layer.gradients.items()}))
    (recon_theirs, grads_theirs), (recon_ours, grads_ours) = results
    np.testing.assert_allclose(recon_ours, recon_theirs, rtol=1e-9, atol=1e-12)
    assert set(grads_ours) == set(grads_theirs) and len(grads_ours) == 12
    for key, want in grads_theirs.items():
        np.testing.assert_allclose(grads_ours[key], want.reshape(grads_ours[key].shape), rtol=1e-8,
                                   atol=1e-12, err_msg=str(key))
    ours.update(ours.loss(X.reshape(3, -1), be64.asarray(recon_ours), ours._dv["t_mean"],
                          ours._dv["t_log_var"]))
    assert all(layer.X == [] for layer in ours.encoder.values())


def test_numpy_ml_nce_loss_takes_the_pooled_embedding(nml, be64):
    """numpy-ml's NCELoss (what its Word2Vec trains with) on anyml's pooled Embedding: the
    (n_ex, 1, n_out) output goes in, its (n_ex, 1, n_out) gradient comes back."""
    sampler_module = importlib.import_module("numpy_ml.utils.data_structures")
    ids, targets = np.array([[1, 4, 3], [0, 6, 5], [2, 3, 1]]), np.array([2, 5, 0])
    results = []
    for kind in ("theirs", "ours"):
        np.random.seed(0)
        sampler = sampler_module.DiscreteSampler(np.full(7, 1 / 7), log=False,
                                                 with_replacement=False)
        nce = nml.losses.NCELoss(n_classes=7, noise_sampler=sampler, num_negative_samples=2,
                                 subtract_log_label_prob=False)
        theirs = nml.layers.Embedding(3, vocab_size=7, pool="mean")
        emb = theirs if kind == "theirs" else _load(L.Embedding(3, vocab_size=7, pool="mean"), theirs)
        X = emb.forward(ids if kind == "theirs" else be64.asarray(ids))
        loss, _ = nce.loss(X, targets, retain_derived=True)
        dX = nce.grad(retain_grads=True, update_params=False)
        emb.backward(dX)
        results.append((float(loss), _host(emb.gradients["W"]), np.shape(X)))
    assert results[0][2] == results[1][2] == (3, 1, 3)
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-10, atol=1e-14)
