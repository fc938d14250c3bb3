r"""NumPy's ``einsum`` behind the weight gradient of an affine map of one example, for arrays of the
numpy backend.

:func:`linear_backward` replaces :func:`anyml.functional.linear.linear_backward` (see "Native fast
paths" in :mod:`anyml.backend`) for a batch of one example, where the weight gradient is an outer
product:

.. math:: \frac{\partial L}{\partial W} = x^\top \frac{\partial L}{\partial z}, \qquad
          \frac{\partial L}{\partial W_{ij}} = x_i \, \frac{\partial L}{\partial z_j}

The pure path writes it as a broadcast product, which NumPy runs one row at a time (one inner loop
call per row): 279 us for 1024 x 1024 in float32 on one thread, against 174 us for ``einsum``, which
makes the same single products (a matrix product with one term per sum runs at 1.2 ms in OpenBLAS).
Every other batch size is handed back to the pure path (``NotImplemented``); the input gradient and
the bias gradient are the pure path's operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml.backend._arrays import Array
from anyml.backend._numpy import NumpyBackend

__all__ = ["linear_backward"]


@NumpyBackend.register_fast_path("linear_backward")
def linear_backward(dZ: Array, cache: tuple[Array, Array], xp: Any = None) -> Any:
    """:func:`anyml.functional.linear.linear_backward` of one example, the weight gradient by
    ``einsum``; ``NotImplemented`` for anything else."""
    if type(dZ) is not np.ndarray or type(cache) is not tuple or len(cache) != 2:
        return NotImplemented
    X, W = cache
    if (type(X) is not np.ndarray or type(W) is not np.ndarray or X.ndim != 2 or W.ndim != 2
            or dZ.ndim != 2 or X.shape[0] != 1 or dZ.shape[0] != 1
            or X.shape[1] != W.shape[0] or dZ.shape[1] != W.shape[1]
            or not (X.dtype == W.dtype == dZ.dtype) or dZ.dtype.kind != "f"):
        return NotImplemented  # the pure path computes (or raises)
    dW = np.einsum("i,j->ij", X[0], dZ[0])
    return np.matmul(dZ, W.T), dW, np.sum(dZ, axis=0)
