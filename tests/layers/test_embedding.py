"""Embedding: against PyTorch's embedding/embedding_bag, finite differences, and the layer API."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.layers.embedding import Embedding
from anyml.testing import assert_close, gradcheck

IDS = [[1, 4, 4, 0], [7, 1, 4, 9], [4, 4, 2, 3]]
RAGGED = [[1, 4, 4], [], [7, 1, 4, 9, 9], [0]]


def _torch_weight(torch, layer):
    return torch.tensor(anyml.to_numpy(layer.parameters["W"]), dtype=torch.float64,
                        requires_grad=True)


@pytest.mark.parametrize("pool", [None, "sum", "mean"])
def test_rectangular_matches_torch(backend, pool):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = Embedding(3, vocab_size=10, pool=pool, backend=backend)
    ids = backend.asarray(IDS)
    Y = layer.forward(ids)
    expected_shape = (3, 4, 3) if pool is None else (3, 1, 3)  # numpy-ml's pooled shape
    assert tuple(Y.shape) == expected_shape
    dY = np.random.default_rng(0).standard_normal(expected_shape).astype(backend.dtype_name)
    assert layer.backward(backend.asarray(dY)) is None

    W = _torch_weight(torch, layer)
    ids_t = torch.tensor(IDS)
    Yt = F.embedding(ids_t, W) if pool is None else F.embedding_bag(ids_t, W, mode=pool)[:, None, :]
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(layer.gradients["W"], W.grad.numpy(), backend=backend)


@pytest.mark.parametrize("pool", ["sum", "mean"])
@pytest.mark.parametrize("given_as", ["lists", "arrays", "mixed"])
def test_ragged_matches_torch_embedding_bag(backend, pool, given_as):
    """A ragged batch as lists of ints, as 1-D arrays of the backend (every backend, array-api-strict
    included), or both."""
    torch = pytest.importorskip("torch")
    layer = Embedding(4, vocab_size=10, pool=pool, backend=backend)
    X = [seq if given_as == "lists" or (given_as == "mixed" and i % 2) else
         backend.asarray(np.asarray(seq, dtype=np.int64), dtype="int64")
         for i, seq in enumerate(RAGGED)]
    Y = layer.forward(X)
    assert tuple(Y.shape) == (4, 1, 4)
    dY = np.random.default_rng(1).standard_normal((4, 1, 4)).astype(backend.dtype_name)
    layer.backward(backend.asarray(dY))

    W = _torch_weight(torch, layer)
    flat = torch.tensor([i for seq in RAGGED for i in seq])
    offsets = torch.tensor(np.cumsum([0] + [len(s) for s in RAGGED[:-1]]))
    Yt = torch.nn.functional.embedding_bag(flat, W, offsets, mode=pool)[:, None, :]
    Yt.backward(torch.tensor(dY, dtype=torch.float64))
    assert_close(Y, Yt.detach().numpy(), backend=backend)
    assert_close(layer.gradients["W"], W.grad.numpy(), backend=backend)
    assert_close(Y[1, ...], np.zeros((1, 4)), backend=backend)  # the empty example


@pytest.mark.parametrize("pool", [None, "sum"])
def test_list_of_equal_length_arrays_is_a_rectangular_batch(backend, pool):
    layer = Embedding(3, vocab_size=10, pool=pool, backend=backend)
    rows = [backend.asarray(np.asarray(r, dtype=np.int32), dtype="int32") for r in IDS]
    Y = layer.forward(rows)
    assert_close(Y, layer.forward(backend.asarray(IDS)), backend=backend, rtol=0, atol=0)
    assert_close(Y, layer.forward(IDS), backend=backend, rtol=0, atol=0)


def test_repeated_ids_accumulate(backend):
    layer = Embedding(2, vocab_size=5, backend=backend)
    layer.forward(backend.asarray([[3, 3, 3], [3, 1, 3]]))
    layer.backward(backend.asarray(np.ones((2, 3, 2))))
    expected = np.zeros((5, 2))
    expected[3], expected[1] = 5.0, 1.0
    assert_close(layer.gradients["W"], expected, backend=backend)


@pytest.mark.parametrize("pool", [None, "sum", "mean"])
def test_gradcheck_weights(backend64, pool):
    layer = Embedding(3, vocab_size=8, pool=pool, backend=backend64)
    gradcheck(layer, [backend64.asarray([[1, 5, 5], [0, 7, 1]])])


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_gradcheck_weights_ragged(backend64, pool):
    layer = Embedding(2, vocab_size=10, pool=pool, backend=backend64)
    gradcheck(layer, [], forward=lambda xs, retain: layer.forward(RAGGED, retain_derived=retain))


def test_lookup(backend):
    layer = Embedding(3, vocab_size=6, backend=backend)
    out = layer.lookup(backend.asarray([5, 0, 5]))
    W = anyml.to_numpy(layer.parameters["W"])
    assert_close(out, W[[5, 0, 5]], backend=backend, rtol=0, atol=0)
    assert_close(layer.lookup([2]), W[[2]], backend=backend, rtol=0, atol=0)
    assert layer.derived_variables == {}
    with pytest.raises(ValueError, match=r"Embedding: lookup expects ids of shape \(M,\)"):
        layer.lookup(backend.asarray([[1]]))


def test_same_seed_same_parameters_on_every_backend(backend):
    reference = Embedding(4, 7, backend=anyml.make_backend("numpy", dtype=backend.dtype_name, seed=0))
    layer = Embedding(4, 7, backend=backend)
    assert_close(layer.parameters["W"], reference.parameters["W"], backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize("pool", [None, "mean"])
def test_summary_round_trip(backend, pool):
    layer = Embedding(3, vocab_size=10, pool=pool, init="he_normal", optimizer="Adam(lr=0.01)",
                      backend=backend)
    ids = backend.asarray(IDS)
    layer.forward(ids)
    layer.backward(backend.asarray(np.ones((3, 4, 3) if pool is None else (3, 1, 3))))
    layer.update()
    summary = layer.summary()
    assert summary["hyperparameters"]["pool"] == pool
    fresh = Embedding(1, vocab_size=2, backend=backend).set_params(summary)
    assert (fresh.n_out, fresh.vocab_size, fresh.pool) == (3, 10, pool)
    assert fresh.optimizer == layer.optimizer
    assert_close(fresh.forward(ids), layer.forward(ids), backend=backend, rtol=0, atol=0)


def test_update_changes_only_the_rows_used(backend64):
    layer = Embedding(2, vocab_size=6, optimizer="SGD(lr=1.0)", backend=backend64)
    before = anyml.to_numpy(layer.parameters["W"]).copy()
    layer.forward(backend64.asarray([[2, 4]]))
    layer.backward(backend64.asarray(np.ones((1, 2, 2))))
    layer.update()
    after = anyml.to_numpy(layer.parameters["W"])
    np.testing.assert_array_equal(after[[0, 1, 3, 5]], before[[0, 1, 3, 5]])
    np.testing.assert_allclose(after[[2, 4]], before[[2, 4]] - 1.0)


def test_bad_input_errors(backend):
    layer = Embedding(3, vocab_size=5, backend=backend)
    on_device = backend.name in ("gpulike", "cupy", "torch-cuda") or "cuda" in str(backend.device)
    # ids on a device are reported by the device flag (without the value), not at the look-up
    got = "an id out of range was looked up on the device" if on_device else "got 5"
    with pytest.raises(ValueError, match=rf"Embedding: ids must lie in \[0, 5\).*{got}"):
        layer.forward(backend.asarray([[0, 5]]))
        layer.check_ids()
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 5\).*got -1"):
        layer.forward([[0, -1]])
    with pytest.raises(TypeError, match="Embedding: expected X to hold integer ids"):
        layer.forward(backend.asarray(np.array([[0.0, 1.0]])))
    with pytest.raises(TypeError, match="Embedding: expected X to hold integer ids"):
        layer.forward([[0, 1.5]])
    with pytest.raises(ValueError, match="Embedding: ragged X .* needs pool"):
        layer.forward([[0, 1], [2]])
    with pytest.raises(ValueError, match=r"Embedding: expected X of shape \(n_ex, n_in\)"):
        layer.forward(backend.asarray([0, 1]))
    pooled = Embedding(3, vocab_size=5, pool="sum", backend=backend)
    with pytest.raises(TypeError, match=r"Embedding: expected X to hold integer ids, X\[1\] holds"):
        pooled.forward([[0, 1], [2.5]])
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 5\)"):
        pooled.forward([[0, 1], [7]])
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 5\)"):
        pooled.forward([backend.asarray([0, 1], dtype="int64"), backend.asarray([9], dtype="int64")])
        pooled.check_ids()
    with pytest.raises(ValueError, match=r"Embedding: each example of a list X must be a 1-D "
                                         r"sequence of ids, X\[1\] has shape \(1, 1\)"):
        pooled.forward([backend.asarray([0, 1], dtype="int64"), backend.asarray([[2]], dtype="int64")])
    with pytest.raises(TypeError, match=r"Embedding: expected X to hold integer ids, X\[0\] has dtype"):
        pooled.forward([backend.asarray([0.0, 1.0]), [2]])
    with pytest.raises(TypeError, match=r"Embedding: each example of a list X must be a list of ints "
                                        r"or a 1-D integer array, X\[1\] is a builtins.int"):
        pooled.forward([[0, 1], 3])
    with pytest.raises(ValueError, match="Embedding: expected X with at least one example"):
        pooled.forward([])
    if backend.name != "numpy":
        with pytest.raises(TypeError, match=r"Embedding: expected X\[0\] to be a"):
            pooled.forward([np.array([0, 1]), [2]])
    pooled.forward([[0, 1], [2]])
    with pytest.raises(ValueError, match=r"Embedding: expected dLdy of shape \(2, 1, 3\)"):
        pooled.backward(backend.rng.normal((2, 3)))
    if backend.name != "numpy":
        with pytest.raises(TypeError, match="Embedding: expected X to be a"):
            layer.forward(np.array([[0, 1]]))
    layer.forward(backend.asarray([[0, 1]]))
    with pytest.raises(ValueError, match=r"Embedding: expected dLdy of shape \(1, 2, 3\)"):
        layer.backward(backend.rng.normal((1, 3)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_out": 0, "vocab_size": 3}, "Embedding: n_out must be a positive integer"),
    ({"n_out": 2, "vocab_size": 2.5}, "Embedding: vocab_size must be a positive integer"),
    ({"n_out": 2, "vocab_size": 3, "pool": "max"}, "Embedding: pool must be one of"),
    ({"n_out": 2, "vocab_size": 3, "init": "glorot_unifrm"}, "unknown initializer"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Embedding(**kwargs)


def test_ids_on_a_device_are_checked_without_a_host_sync():
    """On a device the range check is a flag kept there: no sync at the look-up, an id out of range
    reads row ``id % vocab_size``, and the flag raises at the next finiteness check of update()."""
    be = anyml.make_backend("gpulike", seed=0)
    layer = Embedding(3, vocab_size=5, backend=be)
    W = be.peek(layer.parameters["W"])
    good = be.asarray([[0, 4], [2, 2]])
    bad = be.asarray([[0, 5], [-1, 2]])
    counters = be.counters
    counters.reset()
    Y = layer.forward(good)
    layer.check_ids()  # one read, nothing to report
    assert counters.syncs == 1
    counters.reset()
    Y = layer.forward(bad)
    layer.backward(be.asarray(np.ones((2, 2, 3), dtype=np.float32)))
    assert counters.syncs == 0
    np.testing.assert_array_equal(be.peek(Y), W[[[0, 0], [4, 2]]])
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 5\).*update 1"):
        layer.update()
    layer.forward(good)
    layer.update()  # reported once; later good ids start afresh
    layer.check_ids()


def test_a_model_reports_an_id_out_of_range_on_a_device_at_its_first_update():
    from anyml.layers import Flatten, FullyConnected
    from anyml.model import Sequential

    be = anyml.make_backend("gpulike", seed=0)
    model = Sequential([Embedding(3, vocab_size=5, backend=be), Flatten(backend=be),
                        FullyConnected(2, backend=be)], loss="SquaredError", backend=be)
    X, y = be.asarray([[0, 7], [1, 2]]), be.asarray(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 5\).*update 1"):
        model.train_on_batch(X, y)
