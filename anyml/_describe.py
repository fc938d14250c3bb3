"""The readable table of a :class:`~anyml.model.Sequential` (``model.describe()``, ``print(model)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anyml.model import Sequential

__all__ = ["describe"]


def _output_shapes(model: Sequential, input_shape: Sequence[int] | None) -> list[str]:
    if input_shape is None:
        shapes = getattr(model, "_last_shapes", None)
        if shapes is None or len(shapes) != len(model.layers):
            return ["?"] * len(model.layers)
        return [_fmt_shape(s) for s in shapes]
    be = model.backend
    X = be.asarray(np.zeros((1, *(int(d) for d in input_shape))))  # on the backend's device
    out = []
    with model._inference():
        for layer in model.layers:
            X = layer.forward(X, retain_derived=False)
            out.append(_fmt_shape(tuple(X.shape)))
    return out


def _fmt_shape(shape: tuple[int, ...]) -> str:
    """The shape with the batch axis as ``n``: ``(n, 8, 8, 16)``."""
    dims = ["n", *(str(int(d)) for d in shape[1:])]
    return f"({', '.join(dims)})" if len(dims) > 1 else "(n,)"


def _layer_name(layer: Any) -> str:
    names = []
    while hasattr(layer, "base_layer"):
        config = layer._wrapper_config()
        inner = ", ".join(f"{k}={v}" for k, v in config.items())
        names.append(f"{type(layer).__name__}({inner})")
        layer = layer.base_layer
    if type(layer).__name__ != "Identity" or not names:
        names.append(type(layer).__name__)
    return " > ".join(names)


def _short_optimizer(layer: Any) -> str:
    from anyml.wrappers import WrapperBase

    inner = layer
    while isinstance(inner, WrapperBase):
        inner = inner.base_layer
    if not inner._trainable_names:
        return ""
    opt = inner.optimizer
    text = f"{type(opt).__name__}(lr={opt.lr:g})"
    return text + (" frozen" if not inner.trainable else "")


def describe(model: Sequential, input_shape: Sequence[int] | None = None) -> str:
    """See :meth:`anyml.model.Sequential.describe`."""
    be = model.backend
    shapes = _output_shapes(model, input_shape)
    rows = [("#", "layer", "output shape", "params", "optimizer")]
    for i, (layer, shape) in enumerate(zip(model.layers, shapes, strict=True)):
        n = sum(int(np.prod(p.shape)) for p in layer.parameters.values())
        built = layer.is_initialized
        rows.append((str(i), _layer_name(layer), shape, f"{n:,}" if built else "? (unbuilt)",
                     _short_optimizer(layer)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    align = ["<", "<", "<", ">", "<"]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(row, align, widths, strict=True)).rstrip()

    rule = "-" * len(line(rows[0]))
    total, trainable = model.count_params(), model.count_params(trainable_only=True)
    device = "" if be.device is None else f", device {be.device}"
    head = f"Sequential on {be.name}{device}, {be.dtype_name}; loss {model.loss}"
    foot = [f"parameters: {total:,} ({trainable:,} trainable, {total - trainable:,} non-trainable)"]
    if model.clip_norm is not None:
        foot.append(f"gradients clipped to global norm {model.clip_norm:g}")
    if model.metrics:
        foot.append("metrics: " + ", ".join(m.name for m in model.metrics))
    return "\n".join([head, rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule, *foot])
