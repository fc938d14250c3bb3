"""Convolutional layers: ``Conv1D``, ``Conv2D`` and ``Deconv2D`` (channels last)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyml.activations import ReLU, get_activation
from anyml.backend import Array, Backend
from anyml.functional._padding import (
    Pad4,
    as_count,
    as_pair,
    check_pad_spec,
    pair_or_int,
    resolve_pad1d,
    resolve_pad2d,
)
from anyml.functional.conv import (
    conv1d_backward,
    conv1d_forward,
    conv2d_backward,
    conv2d_forward,
    deconv2d_backward,
    deconv2d_forward,
    resolve_deconv_pads,
)
from anyml.initializers import get_initializer
from anyml.layers._workspace import PooledWorkspaces
from anyml.layers.base import SHAPE

__all__ = ["Conv1D", "Conv2D", "Deconv2D"]


def _conv2d_plan(pad: Any, stride: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                 dilation: int, owner: str) -> tuple[tuple[int, int], Pad4]:
    """The stride pair and the resolved pads of a Conv2D layer for one input size (memoized)."""
    strides = as_pair(stride, "stride", owner)
    return strides, resolve_pad2d(pad, in_shape, kernel, strides, dilation, owner=owner)


def _deconv2d_plan(pad: Any, stride: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                   owner: str) -> tuple[tuple[int, int], Pad4]:
    """The stride pair and the resolved crop of a Deconv2D layer for one input size (memoized)."""
    strides = as_pair(stride, "stride", owner)
    return strides, resolve_deconv_pads(pad, in_shape, kernel, strides, owner=owner)


def _looks_channels_first(shape: tuple[int, ...], in_ch: int | None) -> bool:
    """Whether an input that does not fit looks like ``(n_ex, channels, *spatial)``: its second axis
    is the known channel count, or a small one (up to 4, as RGB and RGBA) before a larger last axis."""
    if in_ch is not None:
        return shape[1] == in_ch and shape[-1] != in_ch
    return shape[1] <= 4 < shape[-1]


class _ConvLayer(PooledWorkspaces):
    """What the convolutional layers share: validation, lazy weights, the act_fn wrap, backward.

    The scratch memory of a forward pass (padded input, column matrices) lives in a workspace
    borrowed from the layer's pool (:mod:`anyml.layers._workspace`) until its backward pass is done.
    """

    _trainable_names = ("W", "b")
    _rank = 4
    _x_shape = "(n_ex, in_rows, in_cols, in_ch)"
    #: Whether an unpadded input must be at least as large as the kernel (not for Deconv2D).
    _kernel_within_input = True

    def __init__(self, out_ch: int, act_fn: Any, init: Any, optimizer: Any,
                 backend: str | Backend | None) -> None:
        super().__init__(optimizer, backend=backend)
        self.out_ch = as_count(out_ch, "out_ch", self._name, 1)
        self.in_ch: int | None = None
        try:
            self.act_fn = get_activation(act_fn)
            get_initializer(init)  # fail early on an unknown name
        except (ValueError, TypeError) as exc:
            msg = f"{self._name}: {exc}"
            raise type(exc)(msg) from exc
        self.init = init

    @property
    def _name(self) -> str:
        return type(self).__name__

    # --- hyperparameters -------------------------------------------------------------------
    def _normalizers(self) -> dict[str, Callable[[Any], Any]]:
        return {"out_ch": lambda v: as_count(v, "out_ch", self._name, 1),
                "in_ch": lambda v: None if v is None else as_count(v, "in_ch", self._name, 1)}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        normalize = self._normalizers().get(key)
        if normalize is None:
            super()._set_hyperparameter(key, value)
        else:
            setattr(self, key, normalize(value))

    def _kernel_dims(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"W": (*self._kernel_dims(), self.in_ch, self.out_ch), "b": (self.out_ch,)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if key == "W" and len(shape) == len(self._kernel_dims()) + 2:
            self.in_ch = int(shape[-2])

    def _init_params(self, in_ch: int) -> None:
        self.in_ch = in_ch
        weights = get_initializer(self.init, act_fn=self.act_fn)
        self._new_param("W", weights((*self._kernel_dims(), in_ch, self.out_ch),
                                     self.backend.host_rng))
        self._new_param("b", self.xp.zeros((self.out_ch,), dtype=self.backend.dtype,
                                           device=self.backend.device))

    # --- forward / backward ----------------------------------------------------------------
    def _prepare(self, X: Array) -> None:
        """Check ``X`` (backend, dtype, rank, channels) and create the weights at the first call."""
        self._check_input(X, ndim=self._rank, shape=self._x_shape)
        in_ch = int(X.shape[-1])
        if in_ch == self.in_ch and "W" in self.parameters and "b" in self.parameters:
            return  # the usual call: the weights exist and the channels match

        shape = tuple(int(d) for d in X.shape)
        mismatch = self.in_ch is not None and in_ch != self.in_ch
        too_small = (self._kernel_within_input and self.in_ch is None
                     and getattr(self, "pad", 0) in (0, "valid", (0, 0), (0, 0, 0, 0))
                     and any(n < k for n, k in zip(shape[1:-1], self._kernel_dims(), strict=True)))
        if (mismatch or too_small) and _looks_channels_first(shape, self.in_ch):
            order = (0, *range(2, len(shape)), 1)
            msg = (f"{self._name}: X of shape {shape} looks channels-first; anyml is channels-last: "
                   f"expected {self._x_shape}. Move the channel axis last with "
                   f"xp.permute_dims(X, {order})")
            raise ValueError(msg)
        if mismatch:
            want = self._x_shape.replace("in_ch", str(self.in_ch))
            msg = f"{self._name}: expected X of shape {want}, got {shape}"
            raise ValueError(msg)
        if not self.is_initialized:
            self._init_params(in_ch)

    def _fused_act(self) -> str | None:
        """The activation the kernel applies itself (``act=``), or ``None`` to apply ``act_fn``
        after it: ReLU is fused (no pass of its own over the output)."""
        return "relu" if type(self.act_fn) is ReLU else None

    def _finish(self, Z: Array, cache: Any, X: Array, retain_derived: bool,
                ws: dict[str, Array], fused: str | None) -> Array:
        if fused is not None:  # Z is already the activation's output
            if retain_derived:
                self._push(True, X=X, _op=cache, _ws=ws, _fused=True, _shape=tuple(Z.shape))
            else:
                self._workspaces.give_back(ws)
            return Z
        Y = self.act_fn(Z)
        if retain_derived:
            self._push(True, X=X, Z=Z, _op=cache, _ws=ws, _shape=tuple(Y.shape))
        else:
            self._workspaces.give_back(ws)
        return Y

    def _backward_op(self, dZ: Array, cache: Any, ws: dict[str, Array]) -> tuple[Array, Array, Array]:
        raise NotImplementedError

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L/\\partial X` and accumulate the gradients of ``W`` and ``b``.

        Parameters
        ----------
        dLdy : array shaped like the output of the matching :meth:`forward`
        retain_grads : bool
            Whether to add the parameter gradients into :attr:`gradients`.
        """
        cache = self._pop(dLdy)
        # a fused activation's gradient is taken by the kernel's backward
        dZ = dLdy if "_fused" in cache else self.act_fn.backward(cache["Z"], dLdy)
        dX, dW, db = self._backward_op(dZ, cache["_op"], cache["_ws"])
        self._accumulate(retain_grads, W=dW, b=db)
        self._workspaces.give_back(cache["_ws"])
        return dX


class Conv2D(_ConvLayer):
    r"""A 2-D convolution (cross-correlation) over channels-last images, :math:`Y = f(\mathrm{pad}(X)
    \star W + b)`.

    Parameters
    ----------
    out_ch : int
        The number of kernels (output channels).
    kernel_shape : int or (int, int)
        ``(kernel_rows, kernel_cols)``.
    pad : int, tuple or "same"
        An int pads every side; ``(rows, cols)`` pads top and bottom by ``rows`` and left and right by
        ``cols``; ``(top, bottom, left, right)`` is explicit. ``"same"`` keeps the input's size
        at every stride, as numpy-ml does: each axis of ``n`` pixels is padded with
        ``(s - 1)(n - 1) + k_eff - 1`` zeros in all, split evenly with an odd pixel on the
        bottom/right (Keras's ``"same"`` gives ``ceil(n / s)`` positions instead; the two agree at
        stride 1). Zeros are padded. Default 0.
    stride : int or (int, int)
        The hop between windows. Default 1.
    dilation : int
        The number of zeros inserted between kernel taps; a kernel of ``k`` taps spans
        ``k * (dilation + 1) - dilation`` pixels. Default 0.
    act_fn : str, Activation or None
        The output nonlinearity :math:`f`; ``None`` is the identity.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    init : str or Initializer
        How ``W`` is drawn (``b`` starts at zero). Default ``"glorot_uniform"``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    ``W`` has shape ``(kernel_rows, kernel_cols, in_ch, out_ch)``, ``b`` shape ``(out_ch,)``
    (numpy-ml's ``(1, 1, 1, out_ch)`` loads through ``set_params``); ``in_ch`` comes from the first
    input. Images are channels-last, as in numpy-ml. With :math:`s` the stride and :math:`d` the dilation,

    .. math::

        Z[n, r, c, o] = b_o + \sum_{i, j, k} X_p[n, r s + i (d + 1), c s + j (d + 1), k] W[i, j, k, o],
        \qquad Y = f(Z)

    and ``out_rows = floor((in_rows + pad_top + pad_bottom - k_eff) / s) + 1``. The backward pass, with
    :math:`G = \partial L / \partial Z = \partial L / \partial Y \odot f'(Z)`:

    .. math::

        \frac{\partial L}{\partial W[i, j, k, o]} = \sum_{n, r, c} X_p[n, r s + i (d+1), c s + j (d+1), k]
        G[n, r, c, o], \quad \frac{\partial L}{\partial b_o} = \sum_{n, r, c} G[n, r, c, o],

    and :math:`\partial L / \partial X` is the transposed convolution of :math:`G` with ``W``, cropped
    by the padding. Both passes are matrix products over im2col matrices, a few examples at a
    time on a CPU (:mod:`anyml.functional.conv`).

    ``pad="same"`` follows numpy-ml rather than Keras or TensorFlow: the output has the input's
    size at any stride (the padding grows with the stride, ``(s - 1)(n - 1) + k_eff - 1`` in all),
    where Keras pads to ``ceil(n / s)`` positions. With a stride above 1 the outer windows then
    cover mostly padding; give an explicit ``pad`` for a Keras-sized output.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.conv import Conv2D
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = Conv2D(8, (3, 3), pad="same", stride=2, backend=be)
    >>> layer.forward(be.rng.normal((2, 9, 9, 3))).shape
    (2, 9, 9, 8)
    """

    def __init__(self, out_ch: int, kernel_shape: Any, pad: Any = 0, stride: Any = 1,
                 dilation: int = 0, act_fn: Any = None, optimizer: Any = None,
                 init: Any = "glorot_uniform", *, backend: str | Backend | None = None) -> None:
        super().__init__(out_ch, act_fn, init, optimizer, backend)
        name = self._name
        self.kernel_shape = as_pair(kernel_shape, "kernel_shape", name)
        self.pad = check_pad_spec(pad, name)
        self.stride = pair_or_int(stride, "stride", name)
        self.dilation = as_count(dilation, "dilation", name, 0)

    def _normalizers(self) -> dict[str, Callable[[Any], Any]]:
        name = self._name
        return {**super()._normalizers(),
                "kernel_shape": lambda v: as_pair(v, "kernel_shape", name),
                "pad": lambda v: check_pad_spec(v, name),
                "stride": lambda v: pair_or_int(v, "stride", name),
                "dilation": lambda v: as_count(v, "dilation", name, 0)}

    def _config(self) -> dict[str, Any]:
        return {"pad": self.pad, "init": str(self.init), "in_ch": self.in_ch, "out_ch": self.out_ch,
                "stride": self.stride, "dilation": self.dilation, "act_fn": str(self.act_fn),
                "kernel_shape": self.kernel_shape}

    def _kernel_dims(self) -> tuple[int, ...]:
        return self.kernel_shape

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Convolve ``X`` of shape ``(n_ex, in_rows, in_cols, in_ch)``; returns
        ``(n_ex, out_rows, out_cols, out_ch)``."""
        self._prepare(X)
        stride, pads = self._plan(_conv2d_plan, (int(X.shape[1]), int(X.shape[2])), self.pad,
                                  self.stride, SHAPE, self.kernel_shape, self.dilation, self._name)
        P = self.parameters
        ws = self._workspaces.take()
        act = self._fused_act()
        Z, cache = conv2d_forward(X, P["W"], P["b"], pads, stride, self.dilation, xp=self.xp,
                                  workspace=ws, act=act)
        return self._finish(Z, cache, X, retain_derived, ws, act)

    def _backward_op(self, dZ: Array, cache: Any, ws: dict[str, Array]) -> tuple[Array, Array, Array]:
        return conv2d_backward(dZ, cache, xp=self.xp, workspace=ws)


class Conv1D(_ConvLayer):
    r"""A 1-D convolution (cross-correlation) over channels-last sequences,
    :math:`Y = f(\mathrm{pad}(X) \star W + b)`.

    Parameters
    ----------
    out_ch : int
        The number of kernels (output channels).
    kernel_width : int
        The number of taps of each kernel.
    pad : int, (left, right), "same" or "causal"
        Zeros added to the sequence ends. ``"same"`` keeps the length ``l_in`` at every stride
        (numpy-ml's rule: ``(s - 1)(l_in - 1) + k_eff - 1`` zeros in all, an odd one on the right;
        Keras gives ``ceil(l_in / s)`` outputs instead). ``"causal"`` puts that same total on the
        left only, so the output also has ``l_in`` positions and output ``t`` sees inputs up to
        ``t`` and never later ones (numpy-ml's rule; Keras's ``"causal"`` pads ``k_eff - 1`` and
        gives ``ceil(l_in / s)`` outputs). Default 0.
    stride : int
        The hop between windows. Default 1.
    dilation : int
        The number of zeros inserted between kernel taps (``k_eff = k * (d + 1) - d``). Default 0.
    act_fn, init, optimizer, backend
        As for :class:`Conv2D`.

    Notes
    -----
    ``W`` has shape ``(kernel_width, in_ch, out_ch)`` and ``b`` shape ``(out_ch,)`` (numpy-ml's
    ``(1, 1, out_ch)`` loads through ``set_params``).

    .. math::

        Z[n, t, o] = b_o + \sum_{j, k} X_p[n, t s + j (d + 1), k]\, W[j, k, o], \qquad Y = f(Z)

    with ``l_out = floor((l_in + pad_left + pad_right - k_eff) / s) + 1``; the gradients are those of
    :class:`Conv2D` on a one-row image.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.conv import Conv1D
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = Conv1D(4, 3, pad="causal", dilation=1, backend=be)
    >>> layer.forward(be.rng.normal((2, 10, 3))).shape
    (2, 10, 4)
    """

    _rank = 3
    _x_shape = "(n_ex, l_in, in_ch)"

    def __init__(self, out_ch: int, kernel_width: int, pad: Any = 0, stride: int = 1,
                 dilation: int = 0, act_fn: Any = None, init: Any = "glorot_uniform",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(out_ch, act_fn, init, optimizer, backend)
        name = self._name
        self.kernel_width = as_count(kernel_width, "kernel_width", name, 1)
        self.pad = check_pad_spec(pad, name, ndim=1, strings=("same", "causal"))
        self.stride = as_count(stride, "stride", name, 1)
        self.dilation = as_count(dilation, "dilation", name, 0)

    def _normalizers(self) -> dict[str, Callable[[Any], Any]]:
        name = self._name
        return {**super()._normalizers(),
                "kernel_width": lambda v: as_count(v, "kernel_width", name, 1),
                "pad": lambda v: check_pad_spec(v, name, ndim=1, strings=("same", "causal")),
                "stride": lambda v: as_count(v, "stride", name, 1),
                "dilation": lambda v: as_count(v, "dilation", name, 0)}

    def _config(self) -> dict[str, Any]:
        return {"pad": self.pad, "init": str(self.init), "in_ch": self.in_ch, "out_ch": self.out_ch,
                "stride": self.stride, "dilation": self.dilation, "act_fn": str(self.act_fn),
                "kernel_width": self.kernel_width}

    def _kernel_dims(self) -> tuple[int, ...]:
        return (self.kernel_width,)

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Convolve ``X`` of shape ``(n_ex, l_in, in_ch)``; returns ``(n_ex, l_out, out_ch)``."""
        self._prepare(X)
        pads = self._plan(resolve_pad1d, int(X.shape[1]), self.pad, SHAPE, self.kernel_width,
                          self.stride, self.dilation, self._name)
        P = self.parameters
        ws = self._workspaces.take()
        act = self._fused_act()
        Z, cache = conv1d_forward(X, P["W"], P["b"], pads, self.stride, self.dilation,
                                  xp=self.xp, workspace=ws, act=act)
        return self._finish(Z, cache, X, retain_derived, ws, act)

    def _backward_op(self, dZ: Array, cache: Any, ws: dict[str, Array]) -> tuple[Array, Array, Array]:
        return conv1d_backward(dZ, cache, xp=self.xp, workspace=ws)


class Deconv2D(_ConvLayer):
    r"""A transposed 2-D convolution ("deconvolution") over channels-last images.

    Each input pixel spreads ``X[n, h, w, :] @ W[i, j]`` over a ``kernel_shape`` patch of the output
    placed ``stride`` pixels apart; where patches overlap they add. This is the gradient of a
    :class:`Conv2D` wrt. its input, so a ``Deconv2D`` with the same ``kernel_shape``, ``stride`` and
    numeric ``pad`` maps a ``Conv2D``'s output size back to its input size (up to the rounding of a
    stride). ``"same"`` does not pair up so: both follow numpy-ml (see ``pad`` below).

    Parameters
    ----------
    out_ch : int
        The number of output channels.
    kernel_shape : int or (int, int)
        ``(kernel_rows, kernel_cols)``.
    pad : int, tuple or "same"
        What is *cropped* from the full output, side by side as for :class:`Conv2D` (int, ``(rows,
        cols)`` or ``(top, bottom, left, right)``): an int ``p`` is
        ``torch.nn.functional.conv_transpose2d(..., padding=p)``. ``"same"`` is numpy-ml's: it
        crops ``k - 1`` (``k // 2`` at the top/left, ``(k - 1) // 2`` at the bottom/right), so
        the output has ``stride * (in - 1) + 1`` rows and columns, the input's grid with
        ``stride - 1`` new positions between neighbours (Keras's ``"same"`` gives
        ``stride * in``). Default 0.
    stride : int or (int, int)
        The spacing of the patches in the output. Default 1.
    act_fn : str, Activation or None
        The output nonlinearity; ``None`` is the identity (an affine output).
    optimizer, init, backend
        As for :class:`Conv2D`.

    Notes
    -----
    ``W`` has shape ``(kernel_rows, kernel_cols, in_ch, out_ch)`` and ``b`` shape ``(out_ch,)``.
    The full output has ``(in_rows - 1) * s + k_r`` rows, and after the crop

    .. math::

        Z[n, y, x, o] = b_o + \sum_{h s + i = y + p_t,\ w s + j = x + p_l}\ \sum_k X[n, h, w, k]
        W[i, j, k, o], \qquad Y = f(Z)

    so ``out_rows = (in_rows - 1) * s - p_t - p_b + k_r``. Backward, with :math:`G` the
    zero-padded :math:`\partial L / \partial Z`:

    .. math::

        \frac{\partial L}{\partial X[n, h, w, k]} = \sum_{i, j, o} G[n, h s + i, w s + j, o] W[i, j, k, o],
        \quad \frac{\partial L}{\partial W[i, j, k, o]} = \sum_{n, h, w} X[n, h, w, k]
        G[n, h s + i, w s + j, o]

    i.e. the backward pass is a strided :class:`Conv2D` of :math:`G`. numpy-ml computes the same
    map by dilating the input and convolving with the flipped kernel; anyml scatters directly, which
    avoids multiplying the inserted zeros, and defines ``pad`` as the crop (the usual meaning of a
    transposed convolution's padding).

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.conv import Deconv2D
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = Deconv2D(4, (3, 3), pad=1, stride=2, backend=be)
    >>> layer.forward(be.rng.normal((2, 5, 5, 3))).shape
    (2, 9, 9, 4)
    """

    _kernel_within_input = False

    def __init__(self, out_ch: int, kernel_shape: Any, pad: Any = 0, stride: Any = 1,
                 act_fn: Any = None, optimizer: Any = None, init: Any = "glorot_uniform", *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(out_ch, act_fn, init, optimizer, backend)
        name = self._name
        self.kernel_shape = as_pair(kernel_shape, "kernel_shape", name)
        self.pad = check_pad_spec(pad, name)
        self.stride = pair_or_int(stride, "stride", name)

    def _normalizers(self) -> dict[str, Callable[[Any], Any]]:
        name = self._name
        return {**super()._normalizers(),
                "kernel_shape": lambda v: as_pair(v, "kernel_shape", name),
                "pad": lambda v: check_pad_spec(v, name),
                "stride": lambda v: pair_or_int(v, "stride", name)}

    def _config(self) -> dict[str, Any]:
        return {"pad": self.pad, "init": str(self.init), "in_ch": self.in_ch, "out_ch": self.out_ch,
                "stride": self.stride, "act_fn": str(self.act_fn), "kernel_shape": self.kernel_shape}

    def _kernel_dims(self) -> tuple[int, ...]:
        return self.kernel_shape

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Apply the transposed convolution to ``X`` of shape ``(n_ex, in_rows, in_cols, in_ch)``;
        returns ``(n_ex, out_rows, out_cols, out_ch)``."""
        self._prepare(X)
        stride, pads = self._plan(_deconv2d_plan, (int(X.shape[1]), int(X.shape[2])), self.pad,
                                  self.stride, SHAPE, self.kernel_shape, self._name)
        P = self.parameters
        act = self._fused_act()
        Z, cache = deconv2d_forward(X, P["W"], P["b"], pads, stride, xp=self.xp, act=act)
        return self._finish(Z, cache, X, retain_derived, self._workspaces.take(), act)

    def _backward_op(self, dZ: Array, cache: Any, ws: dict[str, Array]) -> tuple[Array, Array, Array]:
        return deconv2d_backward(dZ, cache, xp=self.xp, workspace=ws)
