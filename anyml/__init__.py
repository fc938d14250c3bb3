"""anyml: neural-network layers written once against the Python Array API standard.

The same layer runs on NumPy (CPU), CuPy (CUDA), PyTorch (CPU or CUDA) and array-api-strict; the
backend is chosen by :func:`set_backend`, :func:`use_backend` or the ``ANYML_BACKEND`` environment
variable, and defaults to NumPy.
"""

from anyml.backend import (
    Backend,
    BackendUnavailableError,
    available_backends,
    get_backend,
    make_backend,
    set_backend,
    to_numpy,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "get_backend",
    "make_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
]
