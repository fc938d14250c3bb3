"""Pooling layers: ``Pool2D`` (channels last)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyml.backend import Array, Backend
from anyml.functional._padding import Pad4, as_pair, check_pad_spec, pair_or_int
from anyml.functional.pool import POOL_MODES, pool2d_backward, pool2d_forward, resolve_pool_pads
from anyml.layers.base import SHAPE, LayerBase

__all__ = ["Pool2D"]


def _plan(pad: Any, stride: Any, in_shape: tuple[int, int], kernel: tuple[int, int]
          ) -> tuple[tuple[int, int], Pad4]:
    """The stride pair and the resolved pads of a Pool2D layer for one input size (memoized)."""
    strides = as_pair(stride, "stride", "Pool2D")
    return strides, resolve_pool_pads(pad, in_shape, kernel, strides, owner="Pool2D")


def _mode(value: Any) -> str:
    if value not in POOL_MODES:
        msg = f"Pool2D: unknown mode {value!r}; expected one of {POOL_MODES}"
        raise ValueError(msg)
    return str(value)


class Pool2D(LayerBase):
    r"""Max or average pooling over ``kernel_shape`` windows of each channel of a channels-last image.

    Parameters
    ----------
    kernel_shape : int or (int, int)
        ``(kernel_rows, kernel_cols)`` of each window.
    stride : int or (int, int)
        The hop between windows. Default 1.
    pad : int, tuple or "same"
        As for :class:`~anyml.layers.conv.Conv2D` (int, ``(rows, cols)``, ``(top, bottom, left,
        right)``, or ``"same"`` for ``ceil(n / stride)`` outputs, as in Keras; numpy-ml's pooling
        keeps the input's size at every stride, which would put whole windows in the padding, so
        the two differ at strides above 1). Each side's pad must be smaller
        than the kernel, so that every window covers at least one input pixel. Max pooling pads
        with :math:`-\infty`, so padding never wins; average pooling pads with zeros and always
        divides by ``kernel_rows * kernel_cols``, counting the padding (PyTorch's
        ``count_include_pad=True``). Default 0.
    mode : {"max", "average"}
        The pooling function. Default ``"max"``.
    optimizer : str, dict, Optimizer or None
        Kept for API compatibility; the layer has no parameters.
    backend : str or Backend, optional
        The backend whose arrays the layer accepts; default the current backend.

    Notes
    -----
    With stride :math:`s` and :math:`X_p` the padded input,

    .. math::

        Y[n, r, c, k] = \max_{i, j} X_p[n, r s + i, c s + j, k] \quad\text{or}\quad
        \frac{1}{k_r k_c} \sum_{i, j} X_p[n, r s + i, c s + j, k].

    Backward, max pooling sends each :math:`\partial L / \partial Y[n, r, c, k]` to the maximum of
    its window (to the first in row-major order when several pixels tie, as PyTorch does; numpy-ml
    sends it to every tied pixel); average pooling sends :math:`1 / (k_r k_c)` of it to every pixel
    of the window. Overlapping windows add up.

    ``in_ch`` (= ``out_ch``) is fixed by the first input, as in numpy-ml.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.pool import Pool2D
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> Pool2D((2, 2), stride=2, backend=be).forward(be.rng.normal((1, 5, 4, 3))).shape
    (1, 2, 2, 3)
    """

    def __init__(self, kernel_shape: Any, stride: Any = 1, pad: Any = 0, mode: str = "max",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.kernel_shape = as_pair(kernel_shape, "kernel_shape", "Pool2D")
        self.stride = pair_or_int(stride, "stride", "Pool2D")
        self.pad = check_pad_spec(pad, "Pool2D")
        self.mode = _mode(mode)
        self.in_ch: int | None = None
        self.out_ch: int | None = None

    def _config(self) -> dict[str, Any]:
        return {"pad": self.pad, "mode": self.mode, "in_ch": self.in_ch, "out_ch": self.out_ch,
                "stride": self.stride, "kernel_shape": self.kernel_shape}

    def _normalizers(self) -> dict[str, Callable[[Any], Any]]:
        def channels(v: Any) -> int | None:
            if v is None:
                return None
            return as_pair(v, "in_ch", "Pool2D")[0]

        return {"kernel_shape": lambda v: as_pair(v, "kernel_shape", "Pool2D"),
                "stride": lambda v: pair_or_int(v, "stride", "Pool2D"),
                "pad": lambda v: check_pad_spec(v, "Pool2D"),
                "mode": _mode, "in_ch": channels, "out_ch": channels}

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "act_fn":  # numpy-ml writes act_fn=None: the base class checks it is None
            super()._set_hyperparameter(key, value)
            return
        setattr(self, key, self._normalizers()[key](value))

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Pool ``X`` of shape ``(n_ex, in_rows, in_cols, in_ch)``; returns
        ``(n_ex, out_rows, out_cols, in_ch)``."""
        self._check_input(X, ndim=4, shape="(n_ex, in_rows, in_cols, in_ch)")
        in_ch = int(X.shape[3])
        if 0 in (int(X.shape[1]), int(X.shape[2]), in_ch):
            msg = (f"Pool2D: X of shape {tuple(X.shape)} has no rows, columns or channels; only "
                   f"the batch axis may be empty")
            raise ValueError(msg)
        if self.in_ch is None:
            self.in_ch = self.out_ch = in_ch
        elif in_ch != self.in_ch:
            msg = (f"Pool2D: expected X of shape (n_ex, in_rows, in_cols, {self.in_ch}), got "
                   f"{tuple(X.shape)}")
            raise ValueError(msg)
        stride, pads = self._plan(_plan, (int(X.shape[1]), int(X.shape[2])), self.pad, self.stride,
                                  SHAPE, self.kernel_shape)
        Y, cache = pool2d_forward(X, self.kernel_shape, stride, pads, self.mode, xp=self.xp)
        self._push(retain_derived, X=X, _op=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L/\\partial X` for the most recent retained :meth:`forward`."""
        cache = self._pop(dLdy)
        return pool2d_backward(dLdy, cache["_op"], xp=self.xp)
