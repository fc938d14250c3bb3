"""CuPy's own kernels behind anyml's pure functions, for arrays of the cupy backend.

Registered on :class:`~anyml.backend._cupy.CupyBackend` under the names of the pure functions of
:mod:`anyml.functional` they replace (see "Native fast paths" in :mod:`anyml.backend`):

* ``erf`` and ``erfc``: ``cupyx.scipy.special.erf`` / ``erfc``, one CUDA kernel each, where the pure
  path evaluates a series and a continued fraction in a dozen elementwise passes.

They run only where a CUDA device is; elsewhere the emulated-device tests exercise the pure path they
replace, and ``tests/backend/test_cupy_fast.py`` checks the wrappers against the pure functions with
a stand-in for ``cupyx``. Not yet verified on a GPU.
"""

from __future__ import annotations

from typing import Any

from anyml.backend._cupy import CupyBackend

__all__: list[str] = []

register = CupyBackend.register_fast_path


def _special() -> Any:
    import cupyx.scipy.special

    return cupyx.scipy.special


@register("erf")
def erf(x: Any, xp: Any = None) -> Any:
    """``cupyx.scipy.special.erf`` for real floating-point ``x`` (same dtype and device)."""
    if x.dtype.kind != "f":
        return NotImplemented
    return _special().erf(x)


@register("erfc")
def erfc(x: Any, xp: Any = None) -> Any:
    """``cupyx.scipy.special.erfc`` for real floating-point ``x`` (same dtype and device)."""
    if x.dtype.kind != "f":
        return NotImplemented
    return _special().erfc(x)
