"""Arrays of any backend as buffers a communication library can read and write.

NumPy arrays, PyTorch CPU tensors and array-api-strict arrays on its CPU device share their memory
with a NumPy view (no copy). Anything else (CuPy arrays without a CUDA-aware library, arrays on a
simulated device, non-contiguous arrays) is staged: copied to a host array, and the result copied
back with :func:`assign`.
"""

from __future__ import annotations

import numpy as np

from anyml.backend import Array, to_numpy

__all__ = ["assign", "host_view", "library_of", "staged"]


def library_of(x: Array) -> str:
    """The array's library: ``"numpy"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``, ..."""
    return type(x).__module__.split(".")[0]


def host_view(x: Array) -> np.ndarray | None:
    """A writable, C-contiguous NumPy array sharing ``x``'s memory, or ``None`` when there is none.

    Arrays of other libraries in host memory are viewed through DLPack (PyTorch CPU tensors,
    array-api-strict's CPU device); arrays on a GPU or an emulated device have no such view.
    """
    view: np.ndarray | None
    if isinstance(x, np.ndarray):
        view = x
    else:
        try:
            view = np.from_dlpack(x)
        except (AttributeError, BufferError, TypeError, ValueError, RuntimeError):
            return None
    if view is None or not view.flags.c_contiguous or not view.flags.writeable:
        return None
    return view


def staged(x: Array) -> np.ndarray:
    """A contiguous host copy of ``x`` (to be written back with :func:`assign`)."""
    return np.ascontiguousarray(to_numpy(x)).copy()


def assign(x: Array, host: np.ndarray) -> None:
    """Write the host array ``host`` into ``x`` in place (same shape and dtype)."""
    lib = library_of(x)
    if isinstance(x, np.ndarray):
        if x is not host:
            x[...] = host
    elif lib == "torch":
        import torch

        x.copy_(torch.from_numpy(host))
    elif lib == "cupy":
        x.set(host)
    else:
        import array_api_compat

        xp = array_api_compat.array_namespace(x)
        x[...] = xp.asarray(host, device=x.device)
