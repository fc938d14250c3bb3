"""The emulated CUDA device (``gpulike``): it behaves like CuPy where anyml depends on it, counts what
a GPU makes expensive, and leaves a real CuPy alone."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import anyml
from anyml.backend import _standin


@pytest.fixture
def be():
    return anyml.make_backend("gpulike", dtype="float32", seed=0)


def test_the_namespace_is_array_api_compats_cupy_wrapper(be):
    assert be.xp.__name__ == "array_api_compat.cupy"
    assert be.module is _standin.standin()
    assert be.device.id == 1 and _standin.Device().id == 0  # not the current device


def test_no_stand_in_is_left_in_sys_modules(be):
    be.xp.zeros  # noqa: B018 - the namespace is loaded
    for name in ("cupy", "cupyx", "cupy.cuda"):
        assert sys.modules.get(name) is not _standin._MODULES.get(name)
    real = sys.modules.get("array_api_compat.cupy")
    assert real is None or real is not be.xp


def test_host_reads_are_counted_with_their_site(be):
    x = be.rng.normal((4,))
    c = be.counters
    c.reset()
    with be.activate():
        float(x[0])
        bool(x[1] > 0)
        x.item(2)
        x[x > 0]
        be.to_host(x)
    assert c.syncs == 5
    assert any("test_emulated" not in site for site in c.sync_sites)


def test_kernels_views_and_bytes_are_counted(be):
    x = be.rng.normal((8, 4))
    c = be.counters
    c.reset()
    with be.activate():
        y = x * 2.0  # one kernel, 128 bytes
        be.xp.reshape(y, (4, 8))  # a view: free
        be.xp.matrix_transpose(y)  # a view: free
        y += 1.0  # in place: one kernel, no bytes
    assert c.launches == 2
    assert c.allocated_bytes == 8 * 4 * 4
    assert c.peak_bytes - c.live_bytes <= 8 * 4 * 4


def test_freed_memory_leaves_the_live_count(be):
    c = be.counters
    with be.activate():
        live = c.live_bytes
        y = be.xp.ones((1000,), dtype=be.xp.float32)
        assert c.live_bytes == live + 4000
        del y
    assert c.live_bytes == live


def test_a_kernel_off_the_current_device_fails_as_on_cupy(be):
    x = be.rng.normal((3,))
    with pytest.raises(ValueError, match="array device = 1 while current = 0"):
        x + x
    with be.activate():
        assert (x + x).device == be.device


def test_creation_ignores_device_as_array_api_compat_does_on_cupy(be):
    """The bug the stand-in reproduces: ``device=`` is ignored, the current device wins."""
    z = be.xp.zeros((2,), device=be.device)
    assert z.device.id == 0
    with be.activate():
        assert be.xp.zeros((2,), device=be.device).device == be.device


def test_host_arrays_are_refused_and_never_converted_implicitly(be):
    x = be.rng.normal((3,))
    with be.activate(), pytest.raises(TypeError, match="host array"):
        x + np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    np.testing.assert_array_equal(anyml.to_numpy(x), be.peek(x))


def test_clip_through_array_api_compat_syncs_on_cupy(be):
    """Why anyml clips with minimum/maximum: array-api-compat's CuPy clip reads boolean masks."""
    x = be.rng.normal((5,))
    c = be.counters
    with be.activate():
        c.reset()
        clipped = be.xp.clip(x, -0.5, 0.5)
        assert c.syncs == 4
        c.reset()
        fused = be.xp.minimum(be.xp.maximum(x, -0.5), 0.5)
        assert c.syncs == 0
    np.testing.assert_array_equal(be.peek(clipped), be.peek(fused))


@pytest.mark.parametrize("device", ["cpu", "cuda:7", "gpu:0", "cuda:x", -1, True])
def test_device_parsing_refuses_what_is_not_a_cuda_device(device):
    with pytest.raises(ValueError, match="cupy backend: "):
        anyml.make_backend("gpulike", device=device)


def test_cuda_means_the_current_device():
    with _standin.Device(1):
        assert anyml.make_backend("gpulike", device="cuda").device.id == 1
    assert anyml.make_backend("gpulike", device="cuda").device.id == 0
    assert anyml.make_backend("gpulike", device="cuda:1").device.id == 1
    assert anyml.make_backend("gpulike", device=0).device.id == 0
