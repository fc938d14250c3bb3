"""anyml: neural-network layers written once against the Python Array API standard.

The same layer runs on NumPy (CPU), CuPy (CUDA), PyTorch (CPU or CUDA) and array-api-strict; the
backend is chosen by :func:`set_backend`, :func:`use_backend` or the ``ANYML_BACKEND`` environment
variable, and defaults to NumPy.

The families live in submodules: :mod:`anyml.layers`, :mod:`anyml.activations`,
:mod:`anyml.initializers`, :mod:`anyml.optimizers`, :mod:`anyml.schedulers`, :mod:`anyml.losses`,
:mod:`anyml.wrappers`, :mod:`anyml.metrics`, :mod:`anyml.callbacks`, :mod:`anyml.functional` (the
stateless kernels) and :mod:`anyml.testing`.
"""

from anyml import (
    activations,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    schedulers,
    wrappers,
)
from anyml._threads import get_num_threads, set_num_threads
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
from anyml.checkpoint import load, save
from anyml.model import Sequential

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Sequential",
    "activations",
    "available_backends",
    "callbacks",
    "get_backend",
    "get_num_threads",
    "initializers",
    "layers",
    "load",
    "losses",
    "make_backend",
    "metrics",
    "optimizers",
    "save",
    "schedulers",
    "seed",
    "set_backend",
    "set_num_threads",
    "to_numpy",
    "use_backend",
    "wrappers",
]


def seed(value: int | None) -> None:
    """Reseed the current backend's generators (initial weights and per-step randomness)."""
    get_backend().seed(value)

