"""Backends: which array library, device and float dtype anyml computes with.

A :class:`Backend` bundles one array library's Array API namespace (``xp``) with a device, a default
float dtype, a seeded random generator and the few operations the standard does not define
(scatter-add with repeated indices, host transfer, the device context). Layers take their backend
when they are built and never import an array library themselves.

One module per library: :mod:`~anyml.backend._numpy`, :mod:`~anyml.backend._cupy`,
:mod:`~anyml.backend._torch`, :mod:`~anyml.backend._strict`; the seeded generators are in
:mod:`~anyml.backend._random`, the selector in :mod:`~anyml.backend._selector`.

Choosing a backend, from the most to the least specific:

1. an explicit ``backend=`` argument (a name or a :class:`Backend`);
2. the innermost ``with anyml.use_backend(...)``;
3. :func:`set_backend`;
4. the ``ANYML_BACKEND`` environment variable;
5. ``"numpy"``.

``"auto"`` means CuPy when a CUDA device is usable, else NumPy. CuPy, PyTorch and array-api-strict are
imported only when chosen.

Devices
-------
``backend.activate()`` is a context in which the library allocates and runs on the backend's device
(CuPy's device context; for torch CUDA the current CUDA device; a no-op elsewhere). Every public entry
point of anyml (layer ``forward``/``backward``/``update``, optimizers, losses, ``Sequential``,
checkpoint loading) runs inside it.

Native fast paths
-----------------
Layers and :mod:`anyml.functional` are written once against the Array API standard. Where a library
has a faster native operation, its backend registers it under the name of the pure function it
replaces, and the pure function hands the call over::

    # in anyml/functional/conv.py: the pure function, made replaceable
    from anyml.backend import replaceable

    @replaceable
    def conv2d_forward(X, W, b=None, pad=0, stride=1, dilation=0, xp=None, *, ...):
        ...                                       # pure Array API

    # in the library's backend module (e.g. anyml/backend/_torch.py): the native one
    @TorchBackend.register_fast_path("conv2d_forward")
    def _conv2d_forward(X, W, b=None, pad=0, stride=1, dilation=0, xp=None, *, ...):
        import torch.nn.functional as tf
        ...
        return Z, cache

The contract:

- The native function takes exactly the pure function's arguments and returns the same structure
  (same shapes, dtype and device; results equal up to rounding). It may return ``NotImplemented`` to
  hand one call back to the pure path (an unsupported dtype, device or argument).
- A forward/backward pair shares its cache: replace both or neither, and give the cache the layout the
  pure backward expects when only the forward is replaced.
- The library is found from the type of the first argument (:func:`fast_path` ``(name, like)``),
  so functional code never names a library; inside ``with use_fast_paths(False):`` every call takes
  the pure path, and ``f.pure`` is always the pure function. A test checks each native function
  against ``f.pure``.
- Register at import time of the backend module, importing the library lazily inside the function.

Functional code may also ask :func:`fast_path` directly (``native = fast_path("name", x)``) for a
helper that is not itself a public pure function.

Registered natives: PyTorch's kernels on the torch backend (``_torch_fast``, ``_torch_fast_recurrent``),
fused CuPy kernels (``_cupy_fast``), and NumPy's own means on the numpy backend (``_numpy_fast_conv``,
``_numpy_fast_embedding``, ``_numpy_fast_linear``, ``_numpy_fast_pool``: strided window views,
``out=`` arguments and in-place updates, for the cases where the pure path's number of calls or its
temporaries cost more than its arithmetic). The pure path stays, and runs on array-api-strict and
the emulated GPU device.

Transfers
---------
``Sequential.fit`` copies host data to the device once when it fits the backend's budget
(:meth:`Backend.resident_bytes`: a share of a GPU's free memory; 0 for NumPy and array-api-strict,
whose arrays are host memory) and gathers each minibatch there; otherwise each minibatch is gathered
on the host straight into a buffer of the backend's :meth:`Backend.uploader` (pinned memory on a CUDA
device), which copies it on a stream of its own one step ahead (CuPy, torch CUDA) or hands it over
without a copy (NumPy, torch on the CPU). See :mod:`anyml.backend._transfer`.

:meth:`Backend.asarray` takes an array of another library on the same device through DLPack (a torch
CPU tensor for NumPy, a CuPy array for torch on that GPU), sharing its memory rather than copying it
through the host; ``layer.to(...)`` moves parameters that way. Host NumPy arrays are copied unless
``copy=False``; anything else goes through the host.

Scratch memory
--------------
:func:`chunk_bytes` ``(like)`` is the number of bytes one chunk of a chunked kernel (im2col
convolutions) may take, decided by the library of ``like`` for its device (``Backend.chunk_bytes``):
a few MB that stay in a CPU's cache, a few hundred MB on a GPU.
"""

from __future__ import annotations

import numpy as np

# the libraries' own kernels behind the pure functions (each registers on its Backend class)
from anyml.backend import (  # noqa: F401
    _cupy_fast,
    _numpy_fast_conv,
    _numpy_fast_embedding,
    _numpy_fast_linear,
    _numpy_fast_pool,
    _torch_fast,
    _torch_fast_recurrent,
)
from anyml.backend._arrays import namespace_of, to_numpy
from anyml.backend._base import Array, Backend, BackendUnavailableError, dtype_name
from anyml.backend._cupy import CupyBackend
from anyml.backend._device import activated, device_of, on_device_of
from anyml.backend._fastpath import (
    backend_class_of,
    chunk_bytes,
    fast_path,
    register_array_type,
    replaceable,
    use_fast_paths,
)
from anyml.backend._numpy import NumpyBackend
from anyml.backend._random import CupyGenerator, RandomGenerator, TorchGenerator
from anyml.backend._selector import (
    BACKEND_NAMES,
    available_backends,
    get_backend,
    make_backend,
    resolve_backend,
    set_backend,
    use_backend,
)
from anyml.backend._strict import ArrayApiStrictBackend
from anyml.backend._torch import TorchBackend

register_array_type(np.ndarray, NumpyBackend)

__all__ = [
    "BACKEND_NAMES",
    "Array",
    "ArrayApiStrictBackend",
    "Backend",
    "BackendUnavailableError",
    "CupyBackend",
    "CupyGenerator",
    "NumpyBackend",
    "RandomGenerator",
    "TorchBackend",
    "TorchGenerator",
    "activated",
    "available_backends",
    "backend_class_of",
    "chunk_bytes",
    "device_of",
    "dtype_name",
    "fast_path",
    "get_backend",
    "make_backend",
    "namespace_of",
    "on_device_of",
    "replaceable",
    "resolve_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
    "use_fast_paths",
]
