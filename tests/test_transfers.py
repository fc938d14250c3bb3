"""How data reaches the device: ``fit`` copies a small data set once (``preload``), otherwise
each minibatch from pinned memory one step ahead; arrays of another library on the same device are
taken over through DLPack."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml._training import Data
from anyml.backend import _transfer
from anyml.layers import FullyConnected, Softmax
from anyml.model import Sequential


def _data(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def _model(be: anyml.Backend) -> Sequential:
    return Sequential([FullyConnected(4, backend=be), Softmax(backend=be)], loss="CrossEntropy()",
                      backend=be)


def _fit(be: anyml.Backend, epochs: int, preload: bool | None) -> dict[str, list[float]]:
    X, y = _data()
    model = _model(be)
    return model.fit(X, y, epochs=epochs, batch_size=10, verbose=False, preload=preload)


# --------------------------------------------------------------------------- preload
@pytest.mark.parametrize("preload", [True, False, None])
def test_preload_gives_the_same_history(make_backend_for, preload):
    expected = _fit(anyml.make_backend("numpy", dtype="float64", seed=0), 3, False)
    history = _fit(make_backend_for("float64", seed=0), 3, preload)
    assert history.keys() == expected.keys()
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-10, atol=1e-12)


def test_preloaded_data_is_uploaded_once_then_one_order_per_epoch():
    # before: 2 uploads (X and y) per minibatch, 12 per epoch here; now X and y once per fit and the
    # epoch's order once per epoch
    be = anyml.make_backend("gpulike", dtype="float64", seed=0)
    X, y = _data()
    model = _model(be)
    model.fit(X[:10], y[:10], epochs=1, batch_size=10, verbose=False)  # build the layers
    for epochs in (1, 3):
        be.counters.reset()
        model.fit(X, y, epochs=epochs, batch_size=10, verbose=False, preload=True)
        assert be.counters.uploads == 2 + epochs
        assert be.counters.upload_bytes == X.size * 8 + y.size * 8 + epochs * len(X) * 8


def test_streamed_batches_come_from_pinned_memory_without_syncs():
    be = anyml.make_backend("gpulike", dtype="float32", seed=0)
    X, y = _data()
    model = _model(be)
    model.fit(X[:10], y[:10], epochs=1, batch_size=10, verbose=False)
    be.counters.reset()
    model.fit(X, y, epochs=2, batch_size=10, verbose=False, preload=True)
    preloaded_syncs = be.counters.syncs  # the epoch's logs: read once an epoch
    be.counters.reset()
    model.fit(X, y, epochs=2, batch_size=10, verbose=False, preload=False)
    c = be.counters
    assert c.uploads == c.pinned_uploads == 2 * 6 * 2  # X and y of 6 batches, 2 epochs
    assert c.syncs == preloaded_syncs
    assert not [s for s in c.sync_sites if "_transfer.py" in s]


def test_prefetch_starts_the_next_copy_before_the_step_needs_it():
    be = anyml.make_backend("gpulike", dtype="float32", seed=0)
    X, y = _data(31)
    data = Data(be, X, y, "fit", int_labels=True)
    order = np.arange(31)[::-1].copy()
    be.counters.reset()
    with be.activate():
        _, yb = data.batch(order, 0, 10)
        assert be.counters.uploads == 4  # this batch and the next one
        got = []
        for start, size in ((10, 10), (20, 11)):  # the last batch takes the example left alone
            got.append(be.peek(data.batch(order, start, size)[1]))
    assert be.counters.uploads == 6
    assert data._pending is None
    np.testing.assert_array_equal(be.peek(yb), y[order[:10]])
    np.testing.assert_array_equal(got[1], y[order[20:]])


def test_a_wrong_guess_stops_the_prefetch():
    be = anyml.make_backend("gpulike", dtype="float32", seed=0)
    X, y = _data(40)
    data = Data(be, X, y, "evaluate", int_labels=True)
    with be.activate():
        data.batch(None, 0, 10)
        Xb, _ = data.batch(None, 5, 10)  # not the batch guessed: uploaded now, still right
        assert not data._prefetch and data._pending is None
        np.testing.assert_allclose(be.peek(Xb), X[5:15].astype(np.float32))


def test_numpy_and_strict_keep_host_data_on_the_host(backend_id, make_backend_for):
    be = make_backend_for("float64")
    X, y = _data()
    data = Data(be, X, y, "fit", int_labels=True, preload=None)
    expected_resident = be.name not in ("numpy", "array-api-strict")
    assert data.preloaded == expected_resident


# --------------------------------------------------------------------------- host copies
def test_a_torch_cpu_batch_is_the_gathered_buffer_itself(monkeypatch):
    # the batch is gathered, converted, straight into the uploader's buffer and used as it is:
    # no copy between gathering and computing (before: two extra host copies per minibatch)
    torch = pytest.importorskip("torch")
    be = anyml.make_backend("torch", device="cpu", dtype="float32", seed=0)
    buffers: list[np.ndarray] = []
    original = _transfer.Uploader.buffer

    def recording(self, shape, dtype):
        buffers.append(original(self, shape, dtype))
        return buffers[-1]

    monkeypatch.setattr(_transfer.Uploader, "buffer", recording)
    X, y = _data()
    data = Data(be, X, y, "fit", int_labels=True, preload=False)
    Xb, yb = data.batch(np.arange(60)[::-1].copy(), 0, 10)
    assert isinstance(Xb, torch.Tensor) and Xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert np.shares_memory(Xb.numpy(), buffers[0]) and np.shares_memory(yb.numpy(), buffers[1])
    np.testing.assert_array_equal(Xb.numpy(), X[::-1][:10].astype(np.float32))


def test_torch_from_host_copies_once_and_never_shares_the_callers_memory():
    pytest.importorskip("torch")
    be = anyml.make_backend("torch", device="cpu", dtype="float32", seed=0)
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = be.from_host(host)
    assert not np.shares_memory(t.numpy(), host)
    host[0, 0] = 7.0
    assert float(t[0, 0]) == 0.0
    frozen = np.arange(3.0)
    frozen.flags.writeable = False
    np.testing.assert_array_equal(be.from_host(frozen).numpy(), [0.0, 1.0, 2.0])
    assert be.from_host(np.float64(2.5)).shape == ()


# --------------------------------------------------------------------------- DLPack
def test_torch_cpu_tensors_reach_numpy_through_dlpack():
    torch = pytest.importorskip("torch")
    be = anyml.make_backend("numpy", dtype="float32")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = be.asarray(t)
    assert isinstance(a, np.ndarray) and np.shares_memory(a, t.numpy())
    assert be.asarray(t, copy=True) is not None and not np.shares_memory(be.asarray(t, copy=True),
                                                                         t.numpy())


def test_numpy_arrays_reach_torch_through_dlpack_only_when_sharing_is_asked():
    pytest.importorskip("torch")
    be = anyml.make_backend("torch", device="cpu", dtype="float32")
    a = np.arange(6, dtype=np.float32)
    assert not np.shares_memory(be.asarray(a).numpy(), a)  # host data: the caller's, copied
    assert np.shares_memory(be.asarray(a, copy=False).numpy(), a)
    converted = be.asarray(np.arange(3.0), copy=False)  # float64 to float32: converted on the way
    assert str(converted.dtype) == "torch.float32"


def test_moving_a_model_between_numpy_and_torch_shares_memory():
    pytest.importorskip("torch")
    np_be = anyml.make_backend("numpy", dtype="float32", seed=0)
    torch_be = anyml.make_backend("torch", device="cpu", dtype="float32", seed=0)
    X, y = _data()
    model = _model(np_be)
    model.fit(X, y, epochs=1, batch_size=10, verbose=False)
    W = model.layers[0].parameters["W"]
    model.to(torch_be)
    moved = model.layers[0].parameters["W"]
    assert np.shares_memory(moved.numpy(), W)
    model.fit(X, y, epochs=1, batch_size=10, verbose=False)  # trains on torch
    trained = model.layers[0].parameters["W"]
    model.to(np_be)
    assert np.shares_memory(model.layers[0].parameters["W"], trained.numpy())


def test_arrays_without_a_shared_device_go_through_the_host():
    be = anyml.make_backend("numpy", dtype="float32")
    gpu = anyml.make_backend("gpulike", dtype="float32", seed=0)
    x = gpu.rng.normal((3,))
    gpu.counters.reset()
    a = be.asarray(x, copy=False)  # CUDA memory: copied to the host
    assert isinstance(a, np.ndarray) and gpu.counters.syncs == 1
    np.testing.assert_array_equal(be.asarray([1.0, 2.0]), np.array([1.0, 2.0], dtype=np.float32))


def test_copies_and_compute_wait_for_each_other_on_the_device():
    # each copy waits for the work queued before it (memory that work frees may be reused), and
    # the computing stream waits for a batch's copy before using it: events, never a host wait
    from anyml.backend import _standin

    be = anyml.make_backend("gpulike", dtype="float32", seed=0)
    X, y = _data(40)
    data = Data(be, X, y, "fit", int_labels=True)
    compute = _standin._get_current_stream(be.device.id)
    before = compute.waits
    be.counters.reset()
    with be.activate():
        for start in (0, 10, 20):
            data.batch(None, start, 10)
    uploader = data._uploader
    assert uploader.stream.waits == be.counters.uploads == 8  # 3 batches and the next one, X and y
    assert compute.waits - before == 6
    assert be.counters.syncs == 0


@pytest.mark.parametrize("preload", [False, True])
def test_data_parallel_ranks_preload_or_stream_alike(make_backend_for, preload):
    # 3 thread ranks, shares of uneven batches (the prefetch guesses wrong once, then stops)
    from tests.distributed._models import assert_same_run, data, dense, params, run

    X, y = data("class", 23)
    make_backend_for()

    def trainer(preload_here: bool):
        def train(comm):
            model = dense(make_backend_for(seed=3), "CrossEntropy(reduction='sum')")
            history = model.fit(X, y, epochs=2, batch_size=6, verbose=False, comm=comm,
                                preload=preload_here)
            return params(model), history

        return train

    (want, want_history), = run(1, trainer(True))
    for got, history in run(3, trainer(preload)):
        assert_same_run(got, want)
        np.testing.assert_allclose(history["loss"], want_history["loss"], rtol=1e-10)
