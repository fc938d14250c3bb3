"""Functions on arrays of any backend: their namespace, and their values on the host."""

from __future__ import annotations

from typing import Any

import numpy as np

from anyml.backend._base import Array
from anyml.backend._fastpath import backend_class_of

__all__ = ["namespace_of", "to_numpy"]

_NAMESPACES: dict[type, Any] = {np.ndarray: np}


def namespace_of(x: Array) -> Any:
    """The Array API namespace of ``x``, cached by type (far cheaper than a fresh lookup).

    NumPy arrays get ``numpy`` itself (it follows the standard since 2.0 and is faster than a wrapper).
    """
    try:
        return _NAMESPACES[type(x)]
    except KeyError:
        pass
    if isinstance(x, np.ndarray | np.generic):
        xp = np
    else:
        import array_api_compat

        xp = array_api_compat.array_namespace(x)
    _NAMESPACES[type(x)] = xp
    return xp


def to_numpy(x: Any) -> np.ndarray:
    """An array of any backend (or host data) as a NumPy array on the host.

    Device arrays are copied; a NumPy array is returned as it is, and a torch CPU tensor shares its
    memory (copy the result before changing it in place).
    """
    if isinstance(x, np.ndarray):
        return x
    cls = backend_class_of(x)
    return np.asarray(x) if cls is None else cls.array_to_numpy(x)
