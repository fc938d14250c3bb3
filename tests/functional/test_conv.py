"""im2col/col2im and the conv/deconv kernels: a naive reference, adjointness, PyTorch, errors."""

from __future__ import annotations

import numpy as np
import pytest

import anyml
from anyml.functional import conv
from anyml.functional._padding import conv_out_size, resolve_pad2d, same_pads
from anyml.functional.conv import (
    col2im,
    conv1d_backward,
    conv1d_forward,
    conv2d_backward,
    conv2d_forward,
    deconv2d_backward,
    deconv2d_forward,
    im2col,
    resolve_deconv_pads,
    to_planes,
)
from anyml.testing import assert_close

# (kernel, stride, dilation, planes shape (ch, n, rows, cols))
GEOMETRIES = {
    "3x3": ((3, 3), (1, 1), 0, (2, 2, 5, 6)),
    "2x3-stride-2x1": ((2, 3), (2, 1), 0, (1, 3, 6, 5)),
    "dilated-stride2": ((2, 2), (2, 2), 1, (3, 1, 7, 6)),
    "disjoint": ((2, 2), (3, 2), 0, (2, 2, 8, 6)),
}


def _out(shape, kernel, stride, dilation):
    return tuple((n - (k * (dilation + 1) - dilation)) // s + 1
                 for n, k, s in zip(shape[2:], kernel, stride, strict=True))


@pytest.mark.parametrize(("kernel", "stride", "dilation", "shape"), list(GEOMETRIES.values()),
                         ids=list(GEOMETRIES))
def test_im2col_matches_a_naive_gather(backend64, kernel, stride, dilation, shape):
    P = np.random.default_rng(0).standard_normal(shape)
    out = _out(shape, kernel, stride, dilation)
    cols = im2col(backend64.asarray(P), kernel, stride, dilation, out)
    ch, n = shape[:2]
    expected = np.zeros((kernel[0] * kernel[1] * ch, n * out[0] * out[1]))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for k in range(ch):
                for e in range(n):
                    for r in range(out[0]):
                        for c in range(out[1]):
                            expected[(i * kernel[1] + j) * ch + k, (e * out[0] + r) * out[1] + c] = \
                                P[k, e, r * stride[0] + i * (dilation + 1),
                                  c * stride[1] + j * (dilation + 1)]
    assert_close(cols, expected, backend=backend64, rtol=0, atol=0)


@pytest.mark.parametrize(("kernel", "stride", "dilation", "shape"), list(GEOMETRIES.values()),
                         ids=list(GEOMETRIES))
def test_col2im_is_the_adjoint_of_im2col(backend64, kernel, stride, dilation, shape):
    rng = np.random.default_rng(1)
    out = _out(shape, kernel, stride, dilation)
    P = rng.standard_normal(shape)
    C = rng.standard_normal((kernel[0] * kernel[1] * shape[0], shape[1] * out[0] * out[1]))
    lhs = np.sum(anyml.to_numpy(col2im(backend64.asarray(C), shape, kernel, stride, dilation, out))
                 * P)
    rhs = np.sum(C * anyml.to_numpy(im2col(backend64.asarray(P), kernel, stride, dilation, out)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize(("kernel", "pad", "stride"), [
    ((3, 3), 1, 2), ((2, 3), (1, 0, 2, 1), (2, 3)), ((3, 3), "same", 2), ((4, 2), 0, 1)])
def test_deconv2d_is_the_adjoint_of_conv2d(backend64, kernel, pad, stride):
    """<deconv(Y), X> == <Y, conv(X)> for a conv whose output size the deconv inverts."""
    rng = np.random.default_rng(2)
    W = backend64.asarray(rng.standard_normal((*kernel, 2, 3)))
    Y = backend64.asarray(rng.standard_normal((2, 3, 4, 2)))
    D, _ = deconv2d_forward(Y, W, None, pad, stride)
    pads = resolve_deconv_pads(pad, (3, 4), kernel, (stride, stride) if isinstance(stride, int)
                               else stride)
    X = rng.standard_normal((2, *D.shape[1:3], 3))
    # the conv of X with W's channels swapped, with the crop as its padding
    Wc = backend64.xp.permute_dims(W, (0, 1, 3, 2))
    Z, _ = conv2d_forward(backend64.asarray(X), Wc, None, pads, stride)
    assert tuple(Z.shape) == tuple(Y.shape)
    lhs = np.sum(anyml.to_numpy(D) * X)
    rhs = np.sum(anyml.to_numpy(Y) * anyml.to_numpy(Z))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def _torch_leaf(torch, a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def test_conv2d_functional_matches_torch(backend):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    dt = backend.dtype_name
    X, W = rng.standard_normal((2, 6, 5, 3)).astype(dt), rng.standard_normal((3, 2, 3, 4)).astype(dt)
    b = rng.standard_normal(4).astype(dt)
    Z, cache = conv2d_forward(backend.asarray(X), backend.asarray(W), backend.asarray(b),
                              pad=(1, 0, 0, 2), stride=(2, 1), dilation=1)
    G = rng.standard_normal(tuple(Z.shape)).astype(dt)
    dX, dW, db = conv2d_backward(backend.asarray(G), cache)
    Xt, Wt, bt = (_torch_leaf(torch, a) for a in (X, W, b))
    Zt = F.conv2d(F.pad(Xt.permute(0, 3, 1, 2), (0, 2, 1, 0)), Wt.permute(3, 2, 0, 1), bt,
                  stride=(2, 1), dilation=2).permute(0, 2, 3, 1)
    Zt.backward(torch.tensor(G, dtype=torch.float64))
    for got, want in ((Z, Zt.detach()), (dX, Xt.grad), (dW, Wt.grad), (db, bt.grad)):
        assert_close(got, want.numpy(), backend=backend)


def test_conv1d_functional_matches_torch(backend):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    dt = backend.dtype_name
    X, W = rng.standard_normal((2, 9, 2)).astype(dt), rng.standard_normal((3, 2, 3)).astype(dt)
    Z, cache = conv1d_forward(backend.asarray(X), backend.asarray(W), None, pad="causal",
                              stride=2, dilation=1)
    G = rng.standard_normal(tuple(Z.shape)).astype(dt)
    dX, dW, db = conv1d_backward(backend.asarray(G), cache, xp=backend.xp)
    Xt, Wt = _torch_leaf(torch, X), _torch_leaf(torch, W)
    # numpy-ml's causal rule: (s - 1)(n - 1) + k_eff - 1 = 8 + 4 zeros, all on the left
    Zt = F.conv1d(F.pad(Xt.permute(0, 2, 1), (12, 0)), Wt.permute(2, 1, 0), stride=2,
                  dilation=2).permute(0, 2, 1)
    assert tuple(Z.shape) == (2, 9, 3)
    Zt.backward(torch.tensor(G, dtype=torch.float64))
    assert_close(Z, Zt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(dW, Wt.grad.numpy(), backend=backend)
    assert_close(db, G.astype(np.float64).sum(axis=(0, 1)), backend=backend)


def test_deconv2d_functional_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    dt = backend.dtype_name
    X, W = rng.standard_normal((2, 3, 4, 2)).astype(dt), rng.standard_normal((3, 3, 2, 3)).astype(dt)
    Z, cache = deconv2d_forward(backend.asarray(X), backend.asarray(W), None, pad=1, stride=2)
    G = rng.standard_normal(tuple(Z.shape)).astype(dt)
    dX, dW, _ = deconv2d_backward(backend.asarray(G), cache)
    Xt, Wt = _torch_leaf(torch, X), _torch_leaf(torch, W)
    Zt = torch.nn.functional.conv_transpose2d(Xt.permute(0, 3, 1, 2), Wt.permute(2, 3, 0, 1),
                                              stride=2, padding=1).permute(0, 2, 3, 1)
    Zt.backward(torch.tensor(G, dtype=torch.float64))
    assert_close(Z, Zt.detach().numpy(), backend=backend)
    assert_close(dX, Xt.grad.numpy(), backend=backend)
    assert_close(dW, Wt.grad.numpy(), backend=backend)


def test_to_planes_pads_with_zeros(backend):
    X = np.arange(2 * 2 * 3 * 2, dtype=backend.dtype_name).reshape(2, 2, 3, 2)
    P = to_planes(backend.asarray(X), (1, 0, 2, 1), backend.xp)
    expected = np.pad(X, ((0, 0), (1, 0), (2, 1), (0, 0))).transpose(3, 0, 1, 2)
    assert_close(P, expected, backend=backend, rtol=0, atol=0)


@pytest.mark.parametrize(("pad", "expected"), [
    (0, (0, 0, 0, 0)), (2, (2, 2, 2, 2)), ((1, 2), (1, 1, 2, 2)), ((1, 2, 3, 0), (1, 2, 3, 0)),
    ("same", (3, 3, 2, 3)),  # numpy-ml: 5 x 4 stays 5 x 4 at stride 2 (4 + 2 and 3 + 2 zeros)
    ([0, 1], (0, 0, 1, 1)),
])
def test_resolve_pad2d(pad, expected):
    assert resolve_pad2d(pad, (5, 4), (3, 3), (2, 2)) == expected


def test_resolve_pad2d_keras_rule_for_pooling():
    """``same_rule="ceil"`` (Pool2D) pads to ceil(n / stride) outputs: 5 -> 3 rows, 4 -> 2 cols."""
    assert resolve_pad2d("same", (5, 4), (3, 3), (2, 2), same_rule="ceil") == (1, 1, 0, 1)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 4, 5, 8])
@pytest.mark.parametrize("k_eff", [1, 2, 5])
def test_same_pads_rules(n, k_eff, stride):
    before, after = same_pads(n, k_eff, stride)
    assert after - before in (0, 1)
    assert conv_out_size(n, k_eff, stride, before + after) == n
    assert conv_out_size(n, k_eff, stride, before + after - 1) == n - 1  # the fewest zeros
    before, after = same_pads(n, k_eff, stride, "ceil")
    assert conv_out_size(n, k_eff, stride, before + after) == -(-n // stride)


def test_deconv2d_same_crop():
    """numpy-ml's "same": k - 1 cropped, the odd one at the top/left; stride * (n - 1) + 1 remain."""
    assert resolve_deconv_pads("same", (3, 3), (4, 3), (2, 5)) == (2, 1, 1, 1)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda X, W: conv2d_forward(X[0], W), ValueError, r"conv2d: expected X of shape"),
    (lambda X, W: conv2d_forward(X[..., :1], W), ValueError, r"conv2d: expected W of shape"),
    (lambda X, W: conv2d_forward(X, W, W[0, 0, 0, :2]), ValueError, r"conv2d: expected b with 3"),
    (lambda X, W: conv2d_forward(X, W, pad="full"), ValueError, r"conv2d: unknown pad 'full'"),
    (lambda X, W: conv2d_forward(X, W, stride=0), ValueError, r"conv2d: stride must be"),
    (lambda X, W: conv2d_forward(X, W, dilation=3), ValueError, r"conv2d: the kernel spans 9"),
    (lambda X, W: conv1d_forward(X, W), ValueError, r"conv1d: expected X of shape"),
    (lambda X, W: deconv2d_forward(X, W, pad=3), ValueError, r"deconv2d: pad 3\+3 crops all"),
])
def test_errors(call, error, match):
    X = np.ones((1, 4, 4, 2))
    W = np.ones((3, 3, 2, 3))
    with pytest.raises(error, match=match):
        call(X, W)


# ------------------------------------------------------------- every kernel path against torch
# (kernel, pads (top, bottom, left, right), stride, dilation, x_shape, out_ch)
PATH_CASES = {
    "3x3-pad1": ((3, 3), (1, 1, 1, 1), 1, 0, (5, 6, 7, 3), 4),
    "2x3-dilated-asym-pad": ((2, 3), (0, 2, 1, 0), 1, 1, (5, 5, 6, 2), 3),
    "3x3-stride2": ((3, 3), (1, 1, 1, 1), 2, 0, (5, 7, 6, 2), 3),
    "1x1": ((1, 1), (0, 0, 0, 0), 1, 0, (5, 4, 4, 2), 3),
}


def _per_example(kernel, pads, stride, dilation, x_shape, flat):
    """The column-matrix size of one example on the path taken."""
    rows, cols = x_shape[1] + pads[0] + pads[1], x_shape[2] + pads[2] + pads[3]
    if flat:
        return kernel[0] * kernel[1] * x_shape[3] * rows * cols
    keff = [k * (dilation + 1) - dilation for k in kernel]
    out = ((rows - keff[0]) // stride + 1) * ((cols - keff[1]) // stride + 1)
    return kernel[0] * kernel[1] * x_shape[3] * out


def _torch_conv2d(torch, X, W, b, pads, stride, dilation, G):
    F = torch.nn.functional
    Xt, Wt, bt = (_torch_leaf(torch, a) for a in (X, W, b))
    top, bottom, left, right = pads
    Zt = F.conv2d(F.pad(Xt.permute(0, 3, 1, 2), (left, right, top, bottom)), Wt.permute(3, 2, 0, 1),
                  bt, stride=stride, dilation=dilation + 1).permute(0, 2, 3, 1)
    Zt.backward(torch.tensor(G, dtype=torch.float64))
    return [t.numpy() for t in (Zt.detach(), Xt.grad, Wt.grad, bt.grad)]


@pytest.mark.parametrize("flat", [False, True], ids=["strided", "flat"])
@pytest.mark.parametrize("chunks", ["one", "uneven", "per-example"])
@pytest.mark.parametrize(("kernel", "pads", "stride", "dilation", "x_shape", "out_ch"),
                         list(PATH_CASES.values()), ids=list(PATH_CASES))
@pytest.mark.usefixtures("pure_paths")
def test_conv2d_paths_match_torch(backend, monkeypatch, flat, chunks, kernel, pads, stride, dilation,
                                  x_shape, out_ch):
    """Strided and flat gathers, one chunk or several (the last one smaller), and a workspace reused
    by a second call: every combination gives torch's forward and gradients."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(conv, "FLAT_MAX_WASTE", 100.0 if flat else 0.0)
    monkeypatch.setattr(conv, "FLAT_SMALL_GRID", 10**9 if flat else 0)
    per_example = _per_example(kernel, pads, stride, dilation, x_shape, flat and stride == 1)
    max_chunk = {"one": 10**9, "uneven": 2 * per_example, "per-example": 1}[chunks]
    rng = np.random.default_rng(6)
    dt = backend.dtype_name
    workspace: dict = {}
    results = []
    for _ in range(2):
        X = rng.standard_normal(x_shape).astype(dt)
        W = rng.standard_normal((*kernel, x_shape[3], out_ch)).astype(dt)
        b = rng.standard_normal(out_ch).astype(dt)
        Z, cache = conv2d_forward(backend.asarray(X), backend.asarray(W), backend.asarray(b), pads,
                                  stride, dilation, max_chunk=max_chunk, workspace=workspace)
        assert (cache.grid is not None) == (flat and stride == 1)
        G = rng.standard_normal(tuple(Z.shape)).astype(dt)
        got = [Z, *conv2d_backward(backend.asarray(G), cache, workspace=workspace)]
        results.append((got, _torch_conv2d(torch, X, W, b, pads, stride, dilation, G)))
    assert workspace, "the workspace should hold the scratch buffers"
    for got, want in results:  # the first call's results survive the second call
        for name, g, w in zip(("Z", "dX", "dW", "db"), got, want, strict=True):
            assert_close(g, w, backend=backend, err_msg=name)


@pytest.mark.parametrize("flat", [False, True], ids=["strided", "flat"])
def test_conv1d_chunked_paths_match_torch(backend, monkeypatch, flat):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    monkeypatch.setattr(conv, "FLAT_MAX_WASTE", 100.0 if flat else 0.0)
    monkeypatch.setattr(conv, "FLAT_SMALL_GRID", 10**9 if flat else 0)
    rng = np.random.default_rng(7)
    dt = backend.dtype_name
    X, W = rng.standard_normal((5, 9, 2)).astype(dt), rng.standard_normal((3, 2, 3)).astype(dt)
    b = rng.standard_normal(3).astype(dt)
    workspace: dict = {}
    Z, cache = conv1d_forward(backend.asarray(X), backend.asarray(W), backend.asarray(b),
                              pad=(2, 1), dilation=1, max_chunk=30, workspace=workspace)
    G = rng.standard_normal(tuple(Z.shape)).astype(dt)
    dX, dW, db = conv1d_backward(backend.asarray(G), cache, workspace=workspace)
    Xt, Wt, bt = (_torch_leaf(torch, a) for a in (X, W, b))
    Zt = F.conv1d(F.pad(Xt.permute(0, 2, 1), (2, 1)), Wt.permute(2, 1, 0), bt,
                  dilation=2).permute(0, 2, 1)
    Zt.backward(torch.tensor(G, dtype=torch.float64))
    for name, got, want in (("Z", Z, Zt.detach()), ("dX", dX, Xt.grad), ("dW", dW, Wt.grad),
                            ("db", db, bt.grad)):
        assert_close(got, want.numpy(), backend=backend, err_msg=name)


@pytest.mark.parametrize("max_chunk", [None, 1, 100])
def test_deconv2d_chunked_matches_torch(backend, max_chunk):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    dt = backend.dtype_name
    workspace: dict = {}
    for _ in range(2):
        X, W = rng.standard_normal((5, 3, 4, 2)).astype(dt), rng.standard_normal((3, 3, 2, 3)).astype(dt)
        b = rng.standard_normal(3).astype(dt)
        Z, cache = deconv2d_forward(backend.asarray(X), backend.asarray(W), backend.asarray(b), pad=1,
                                    stride=2, max_chunk=max_chunk)
        G = rng.standard_normal(tuple(Z.shape)).astype(dt)
        dX, dW, db = deconv2d_backward(backend.asarray(G), cache, workspace=workspace)
        Xt, Wt, bt = (_torch_leaf(torch, a) for a in (X, W, b))
        Zt = torch.nn.functional.conv_transpose2d(Xt.permute(0, 3, 1, 2), Wt.permute(2, 3, 0, 1), bt,
                                                  stride=2, padding=1).permute(0, 2, 3, 1)
        Zt.backward(torch.tensor(G, dtype=torch.float64))
        for name, got, want in (("Z", Z, Zt.detach()), ("dX", dX, Xt.grad), ("dW", dW, Wt.grad),
                                ("db", db, bt.grad)):
            assert_close(got, want.numpy(), backend=backend, err_msg=name)


def test_workspace_grid_buffer_follows_the_output_shape(backend64, monkeypatch):
    """Two geometries with the same padded grid but different outputs share a workspace safely."""
    monkeypatch.setattr(conv, "FLAT_MAX_WASTE", 100.0)
    rng = np.random.default_rng(9)
    X = backend64.asarray(rng.standard_normal((2, 5, 5, 2)))
    workspace: dict = {}
    for kernel, pads in (((3, 3), (1, 1, 1, 1)), ((5, 5), (1, 1, 1, 1)), ((3, 3), (1, 1, 1, 1))):
        W = backend64.asarray(rng.standard_normal((*kernel, 2, 3)))
        Z, cache = conv2d_forward(X, W, None, pads, workspace=workspace)
        G = backend64.asarray(rng.standard_normal(tuple(Z.shape)))
        shared = conv2d_backward(G, cache, workspace=workspace)
        Z0, cache0 = conv2d_forward(X, W, None, pads)
        for got, want in zip((Z, *shared), (Z0, *conv2d_backward(G, cache0)), strict=True):
            assert_close(got, anyml.to_numpy(want), backend=backend64)


def test_default_chunking_follows_the_backend_budget(monkeypatch):
    """The chunk size comes from the backend's byte budget for the array's device: no budget keeps
    the batch whole; the CPU budget (2 MB) splits large column matrices."""
    with monkeypatch.context() as patched:
        patched.setattr(conv, "chunk_bytes", lambda like: None)
        assert conv._batches(64, 10**6, np.ones(1), None) == [(0, 64)]
    assert conv._batches(64, 10**6, np.ones(1), None) == [(i, i + 1) for i in range(64)]
    assert conv._batches(64, 2**15, np.ones(1, dtype=np.float64), None) == [
        (i, i + 8) for i in range(0, 64, 8)]
    assert conv._batches(64, 2**15, np.ones(1, dtype=np.float32), None) == [
        (i, i + 16) for i in range(0, 64, 16)]
    assert conv._batches(5, 10, np.ones(1), 20) == [(0, 2), (2, 4), (4, 5)]


# ------------------------------------------------------------- peak memory on the emulated GPU
@pytest.mark.parametrize("budget_mb", [None, 64], ids=["backend-budget", "64MB"])
def test_conv2d_peak_memory_is_bounded_by_the_chunk_budget(monkeypatch, budget_mb):
    """On ``gpulike``, batch 128 of 56x56x64 images, 3x3 ``"same"`` to 64 channels with ReLU: the
    forward and backward passes together allocate at most

        2 B + 5 S

    bytes above what was live before, where ``B`` is the backend's chunk budget
    (``Backend.chunk_bytes``: 256 MB on a GPU) and ``S`` the bytes of one activation on the padded
    grid, ``n (rows + 2)(cols + 2) max(in_ch, out_ch)`` floats: one chunk's column matrix and its
    gradient (each within ``B``), and the padded input planes, the output, the output-gradient grid
    and the input-gradient planes (each about ``S``), with ``S`` to spare for a chunk's temporaries.
    Between the passes at most ``B + 2 S`` stays allocated (the column buffer, the padded input, the
    output). Either way far less than one whole column matrix (about 1 GB here)."""
    be = anyml.make_backend("gpulike", dtype="float32", seed=0)
    if budget_mb is not None:
        monkeypatch.setattr(type(be), "chunk_bytes", classmethod(lambda cls, device: budget_mb << 20))
    n, rows, cols, ch, out_ch = 128, 56, 56, 64, 64
    with be.activate():
        X = be.rng.normal((n, rows, cols, ch))
        W = be.rng.normal((3, 3, ch, out_ch)) * 0.05
        b = be.rng.normal((out_ch,))
        dZ = be.rng.normal((n, rows, cols, out_ch))
    B = anyml.backend.chunk_bytes(X)
    want = 256 << 20 if budget_mb is None else budget_mb << 20
    assert want == B
    S = n * (rows + 2) * (cols + 2) * max(ch, out_ch) * 4
    whole_columns = n * (rows + 2) * (cols + 2) * 9 * ch * 4
    counters = be.counters
    counters.reset()
    base = counters.live_bytes
    workspace: dict = {}
    _, cache = conv2d_forward(X, W, b, "same", workspace=workspace, act="relu")
    assert len(cache.batches) > 1 and cache.colsT is None  # chunked: no whole column matrix kept
    held = counters.live_bytes - base
    dX, dW, _ = conv2d_backward(dZ, cache, workspace=workspace)
    peak = counters.peak_bytes - base
    assert held <= B + 2 * S, (held, B, S)
    assert peak <= 2 * B + 5 * S, (peak, B, S)
    assert peak < whole_columns, (peak, whole_columns)
    assert tuple(dX.shape) == tuple(X.shape) and tuple(dW.shape) == tuple(W.shape)


@pytest.mark.parametrize(("kernel", "pads", "stride", "dilation", "x_shape", "out_ch"),
                         [c for c in PATH_CASES.values() if c[2] == 1], ids=str)
@pytest.mark.usefixtures("pure_paths")
def test_conv2d_take_path_matches_torch(backend, monkeypatch, kernel, pads, stride, dilation,
                                        x_shape, out_ch):
    """The small flat path that gathers its columns and the input gradient's with ``take``
    (``TAKE_MAX``), with a workspace reused by a second call, gives torch's forward and gradients,
    with and without the fused ReLU."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(conv, "FLAT_MAX_WASTE", 100.0)
    monkeypatch.setattr(conv, "TAKE_MAX", 10**9)
    rng = np.random.default_rng(11)
    dt = backend.dtype_name
    workspace: dict = {}
    for act in (None, "relu", None):
        X = rng.standard_normal(x_shape).astype(dt)
        W = rng.standard_normal((*kernel, x_shape[3], out_ch)).astype(dt)
        b = rng.standard_normal(out_ch).astype(dt)
        Z, cache = conv2d_forward(backend.asarray(X), backend.asarray(W), backend.asarray(b), pads,
                                  stride, dilation, workspace=workspace, act=act)
        assert conv._taken(cache.batches, cache.grid[0] * cache.grid[1], kernel[0] * kernel[1],
                           x_shape[3])
        G = rng.standard_normal(tuple(Z.shape)).astype(dt)
        got = [Z, *conv2d_backward(backend.asarray(G), cache, workspace=workspace)]
        Zr = _torch_conv2d(torch, X, W, b, pads, stride, dilation, np.zeros_like(G))[0]
        Gr = G * (Zr > 0) if act else G
        want = _torch_conv2d(torch, X, W, b, pads, stride, dilation, Gr)
        if act:
            want[0] = np.maximum(want[0], 0)
        for name, g, w in zip(("Z", "dX", "dW", "db"), got, want, strict=True):
            assert_close(g, w, backend=backend, err_msg=name)
