"""Corrupt, truncated, tampered and hostile checkpoint files: every one raises CheckpointError (a
ValueError) naming the file and the problem, before anything large is allocated or built."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyml
from anyml import checkpoint
from anyml.checkpoint import CheckpointError, load, save
from anyml.layers import BatchNorm1D, Embedding, Flatten, FullyConnected, Softmax
from anyml.model import Sequential
from tests.bad_input._helpers import refused


def _model(be):
    model = Sequential([Embedding(4, 10, backend=be), Flatten(backend=be),
                        FullyConnected(3, optimizer="Adam(lr=0.01)", backend=be),
                        BatchNorm1D(backend=be), Softmax(backend=be)], loss="CrossEntropy")
    rng = np.random.default_rng(0)
    model.fit(rng.integers(0, 10, (16, 5)), rng.integers(0, 3, 16), epochs=1, batch_size=8,
              verbose=False)
    return model


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    save(_model(anyml.make_backend("numpy", seed=0)), path)
    return path


def _parts(path):
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    return json.loads(meta["anyml"]), arrays


def _forge(path, header, arrays, digest=True, text=None):
    """Write a safetensors file with this header (and, as a forger would, a matching digest)."""
    from safetensors.numpy import save_file

    text = json.dumps(header) if text is None else text
    meta = {"anyml": text, "sha256": checkpoint._digest(text, arrays) if digest else "0" * 64}
    save_file(arrays, path, metadata=meta)


def test_round_trip_is_safetensors(saved):
    header, arrays = _parts(saved)
    assert header["version"] == checkpoint.FORMAT_VERSION and arrays
    assert isinstance(load(saved), Sequential)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_every_flipped_byte_is_refused(saved):
    data = saved.read_bytes()
    step = max(1, len(data) // 300)
    for at in range(0, len(data), step):
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        saved.write_bytes(bytes(flipped))
        try:
            load(saved)
        except CheckpointError as exc:
            assert str(saved) in str(exc)
        else:  # only a flip inside the JSON padding may leave the file meaning the same thing
            header_end = 8 + struct.unpack("<Q", data[:8])[0]
            assert at < header_end and data[at:at + 1] == b" ", at


@pytest.mark.parametrize("keep", [0, 4, 8, 9, 100, -100, -1])
def test_truncated(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    refused(str(saved), load, saved, types=(CheckpointError,))


@pytest.mark.parametrize("claim", [2**63, 10**12, 2**32])
def test_header_length_claims(saved, claim):
    data = saved.read_bytes()
    saved.write_bytes(struct.pack("<Q", claim) + data[8:])
    refused(str(saved), load, saved, types=(CheckpointError,))


def test_deeply_nested_json(saved):
    header, arrays = _parts(saved)
    text = json.dumps(header)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    _forge(saved, header, arrays, text=text)
    refused("nested", load, saved, types=(CheckpointError,))


def _edited(saved, edit):
    header, arrays = _parts(saved)
    arrays = edit(header, arrays) or arrays
    _forge(saved, header, arrays)
    return refused(str(saved), load, saved, types=(CheckpointError,))


def _layer(header, name):
    return next(e for e in header["layers"] if e["class"] == name)["summary"]["hyperparameters"]


@pytest.mark.parametrize(("key", "value"), [("vocab_size", 10**13), ("n_out", 10**9),
                                            ("vocab_size", -1), ("n_out", 2.5), ("init", "Nope"),
                                            ("pool", "median")])
def test_huge_or_bad_embedding_settings(saved, key, value):
    def edit(header, arrays):
        _layer(header, "Embedding")[key] = value

    _edited(saved, edit)


@pytest.mark.parametrize(("key", "value"), [("momentum", 5), ("epsilon", -1), ("n_in", 10**12),
                                            ("n_in", 0)])
def test_bad_batchnorm_settings(saved, key, value):
    def edit(header, arrays):
        _layer(header, "BatchNorm1D")[key] = value

    _edited(saved, edit)


@pytest.mark.parametrize("case", ["no t", "extra entry", "unknown parameter", "wrong shape",
                                  "negative t", "not a dict", "bad step", "state not a dict"])
def test_malformed_optimizer_state(saved, case):
    def edit(header, arrays):
        opt = _layer(header, "FullyConnected")["optimizer"]
        cache = opt["cache"]
        if case == "no t":
            del cache["W"]["t"]
        elif case == "extra entry":
            cache["W"]["extra"] = cache["W"]["mean"]
        elif case == "unknown parameter":
            cache["Q"] = cache.pop("W")
        elif case == "wrong shape":
            key = cache["W"]["mean"]["__array__"]
            arrays = dict(arrays)
            arrays[key] = np.zeros((2, 2), arrays[key].dtype)
            header["arrays"][key]["shape"] = [2, 2]
            return arrays
        elif case == "negative t":
            cache["W"]["t"] = -3
        elif case == "not a dict":
            opt["cache"] = [1, 2]
        elif case == "bad step":
            opt["state"]["cur_step"] = "many"
        else:
            opt["state"] = 7
        return None

    _edited(saved, edit)


@pytest.mark.parametrize("case", ["missing W", "int W", "nan W", "shape W"])
def test_bad_parameters(saved, case):
    def edit(header, arrays):
        params = next(e for e in header["layers"] if e["class"] == "FullyConnected")["summary"][
            "parameters"]
        arrays = dict(arrays)
        key = params["W"]["__array__"]
        if case == "missing W":
            del params["W"]
            del arrays[key]
            del header["arrays"][key]
        elif case == "int W":
            arrays[key] = arrays[key].astype(np.int64)
            header["arrays"][key]["dtype"] = "<i8"
        elif case == "nan W":
            arrays[key] = np.full_like(arrays[key], np.nan)
        else:
            arrays[key] = np.ones((3, 3), arrays[key].dtype)
            header["arrays"][key]["shape"] = [3, 3]
        return arrays

    _edited(saved, edit)


@pytest.mark.parametrize("edit_name", ["class", "kind", "version", "loss", "training", "layers",
                                       "format", "wrappers", "arrays"])
def test_malformed_header(saved, edit_name):
    def edit(header, arrays):
        if edit_name == "class":
            header["layers"][0]["class"] = "__import__('os')"
        elif edit_name == "kind":
            header["kind"] = "Pipeline"
        elif edit_name == "version":
            header["version"] = 99
        elif edit_name == "loss":
            header["loss"] = "CrossEntropy(" + "-" * 5000 + "1)"
        elif edit_name == "training":
            header["layers"][0]["training"] = "yes"
        elif edit_name == "layers":
            header["layers"] = {"0": 1}
        elif edit_name == "format":
            header["format"] = "pickle"
        elif edit_name == "wrappers":
            header["layers"][2]["summary"]["hyperparameters"]["wrappers"] = [{"wrapper": "Evil"}]
        else:
            header["arrays"] = []

    _edited(saved, edit)


def test_digest_mismatch(saved):
    header, arrays = _parts(saved)
    _forge(saved, header, arrays, digest=False)
    refused("digest", load, saved, types=(CheckpointError,))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x00" * 64, b"{}", b"x" * 5000])
def test_not_checkpoints(tmp_path, content):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    refused(str(path), load, path, types=(CheckpointError,))


def test_hostile_npz_claiming_a_huge_array(tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(4))
    npy = buf.getvalue().replace(b"(4,)", b"(10000000000000,)".ljust(4))
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a0.npy", npy)
    refused(str(path), load, path, types=(CheckpointError,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
def test_fuzz_random_corruption(saved, flips):
    data = bytearray(saved.read_bytes())
    original = bytes(data)
    for at, mask in flips:
        data[at % len(data)] ^= mask
    saved.write_bytes(bytes(data))
    try:
        load(saved)
    except CheckpointError:
        pass
    finally:
        saved.write_bytes(original)


def test_a_layer_checkpoint_without_parameters_yet(tmp_path):
    path = tmp_path / "lazy.safetensors"
    save(FullyConnected(3, backend=anyml.make_backend("numpy")), path)
    assert load(path).parameters == {}
