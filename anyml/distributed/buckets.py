"""Gradient buckets: sum the parameter gradients of every rank, overlapped with the backward pass.

The backward pass finishes the gradients of the last layer first. :class:`GradientReducer` collects
them in that order (reverse layer order) into buckets of at most ``bucket_bytes`` and starts a
non-blocking reduction of each bucket as soon as it is full, while the backward pass goes on through
the earlier layers (the scheme of PyTorch DDP's buckets and Horovod's tensor fusion: few large
messages instead of many small ones).

A bucket of one gradient is reduced in place (no copy). A bucket of several is concatenated into one
flat buffer (the single copy), reduced, and each layer's gradient is replaced by a view of its slice
of the buffer (no copy back where the library has views).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from anyml.backend import Array
from anyml.distributed.base import Communicator, Handle
from anyml.layers.base import LayerBase
from anyml.wrappers import WrapperBase

__all__ = ["DEFAULT_BUCKET_BYTES", "GradientReducer", "param_layers"]


#: Bucket size cap (PyTorch DDP uses 25 MiB).
DEFAULT_BUCKET_BYTES = 25 * 2**20


def param_layers(obj: Any) -> list[LayerBase]:
    """The layers holding parameters inside ``obj`` (itself, wrapped and nested layers), each once,
    in a fixed order (the same on every rank)."""
    out: list[LayerBase] = []
    seen: set[int] = set()

    def visit(x: Any) -> None:
        if id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, LayerBase):
            out.append(x)
        for value in vars(x).values():
            if isinstance(value, LayerBase | WrapperBase):
                visit(value)
            elif isinstance(value, list | tuple):
                for v in value:
                    if isinstance(v, LayerBase | WrapperBase):
                        visit(v)

    visit(obj)
    return out


class _Bucket:
    def __init__(self) -> None:
        self.entries: list[tuple[LayerBase, str]] = []
        self.nbytes = 0


class GradientReducer:
    """Sums the gradients of a model's layers across ranks, bucket by bucket.

    Parameters
    ----------
    layers : list
        The model's layers in forward order.
    comm : Communicator
    bucket_bytes : int
        The cap on a bucket's size; a gradient larger than the cap is a bucket of its own.

    Notes
    -----
    Call :meth:`begin`, then :meth:`layer_done` with the index of each layer as its backward
    finishes (in reverse order), then :meth:`finish`, which waits for every bucket. A layer that
    appears more than once is handed over at its first position, where its gradient is complete.
    """

    def __init__(self, layers: list[Any], comm: Communicator,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.comm = comm
        self.bucket_bytes = int(bucket_bytes)
        self._ready_at: dict[int, list[LayerBase]] = {}
        seen: set[int] = set()
        for i, layer in enumerate(layers):
            for p in param_layers(layer):
                if id(p) not in seen:
                    seen.add(id(p))
                    self._ready_at.setdefault(i, []).append(p)
        self._pending: list[tuple[Handle, _Bucket, Array | None]] = []
        self._bucket = _Bucket()
        self._device = (layers[0].backend.activate if layers else contextlib.nullcontext)

    def begin(self) -> None:
        self._pending.clear()
        self._bucket = _Bucket()

    def layer_done(self, index: int) -> None:
        """Layer ``index`` (forward order) finished its backward pass."""
        for layer in reversed(self._ready_at.get(index, [])):
            if not layer.trainable:
                continue
            for name in reversed(list(layer.gradients)):
                grad = layer.gradients[name]
                size = math.prod(grad.shape) * _itemsize(grad)
                if self._bucket.entries and self._bucket.nbytes + size > self.bucket_bytes:
                    self._launch()
                self._bucket.entries.append((layer, name))
                self._bucket.nbytes += size
        if self._bucket.nbytes >= self.bucket_bytes:
            self._launch()

    def _launch(self) -> None:
        with self._device():  # the bucket's concatenation runs on the layers' device
            self._launch_bucket()

    def _launch_bucket(self) -> None:
        bucket, self._bucket = self._bucket, _Bucket()
        if not bucket.entries:
            return
        if len(bucket.entries) == 1:
            layer, name = bucket.entries[0]
            handle = self.comm.allreduce_async([_contiguous(layer.gradients[name], layer.xp)])
            self._pending.append((handle, bucket, None))
            return
        xp = bucket.entries[0][0].xp
        flat = xp.concat([xp.reshape(layer.gradients[name], (-1,)) for layer, name in bucket.entries])
        self._pending.append((self.comm.allreduce_async([flat]), bucket, flat))

    def finish(self) -> None:
        """Start the last bucket and wait for all; the layers then hold the summed gradients."""
        self._launch()
        with self._device():
            self._finish()

    def _finish(self) -> None:
        for handle, bucket, flat in self._pending:
            reduced = handle.wait()
            if flat is None:
                layer, name = bucket.entries[0]
                layer.gradients[name] = reduced[0]
                continue
            offset = 0
            for layer, name in bucket.entries:
                shape = tuple(layer.gradients[name].shape)
                n = math.prod(shape)
                layer.gradients[name] = layer.xp.reshape(flat[offset:offset + n], shape)
                offset += n
        self._pending.clear()


def _itemsize(x: Array) -> int:
    size = getattr(x, "itemsize", None)
    if size is None:
        size = getattr(x.dtype, "itemsize", None)
    if size is None:
        size = x.element_size() if hasattr(x, "element_size") else 8
    return int(size)


def _contiguous(x: Array, xp: Any) -> Array:
    flags = getattr(x, "flags", None)
    if flags is not None and hasattr(flags, "c_contiguous") and not flags.c_contiguous:
        return xp.asarray(x, copy=True)
    if hasattr(x, "is_contiguous") and not x.is_contiguous():
        return x.contiguous()
    return x
