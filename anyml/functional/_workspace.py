"""Scratch memory kept from call to call by the convolution and recurrent kernels.

A *workspace* is a plain dict of arrays that a caller keeps between calls and hands to a kernel's
forward and backward functions. The kernels write their intermediate values (padded inputs, column
matrices, per-timestep states and gradients) into it instead of into fresh arrays, which spares the
allocator from asking the system for (and zeroing) megabytes of new pages on every call.

The contract: a workspace serves one forward / backward pair at a time (do not hand it to another
forward before the backward of the first one has run), and the arrays a kernel returns are never
workspace arrays, so a caller may keep them while the workspace is reused.
"""

from __future__ import annotations

from typing import Any

from anyml.backend import Array

__all__ = ["buffer"]


def buffer(ws: dict | None, key: Any, shape: tuple[int, ...], like: Array, xp: Any,
           zero: bool = False) -> Array:
    """The workspace array ``key`` of ``shape`` with the dtype and device of ``like``.

    The array is made anew (zeroed if ``zero``, else uninitialized) only when ``key`` is missing or
    holds an array of another type, shape, dtype or device; without a workspace (``ws is None``) it
    is always a fresh array. A ``zero`` buffer's key must fix which of its parts the caller never
    writes, since those keep their zeros from one call to the next.
    """
    buf = None if ws is None else ws.get(key)
    if (buf is None or type(buf) is not type(like) or tuple(buf.shape) != shape
            or buf.dtype != like.dtype or buf.device != like.device):
        make = xp.zeros if zero else xp.empty
        buf = make(shape, dtype=like.dtype, device=like.device)
        if ws is not None:
            ws[key] = buf
    return buf
