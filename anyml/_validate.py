"""Checks of scalar constructor arguments, shared by layers, optimizers, schedulers and initializers.

Each check returns the value as a plain Python ``int`` or ``float`` or raises a ``ValueError`` whose
message names the owner and the argument and echoes what came:
``"Embedding: n_out must be a positive integer, got 2.5"``.

Integers are Python or NumPy integers; ``bool`` is refused (``True`` is not a count) and so is a float,
even a whole one. Real numbers are any finite :class:`numbers.Real` but ``bool`` (NaN and infinity
are refused: no setting of anyml means anything at infinity).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["integer", "is_integer", "non_negative_int", "positive_int", "real"]


def is_integer(value: object) -> bool:
    """Whether ``value`` is a Python or NumPy integer; ``bool`` and whole floats are not."""
    # a plain int first: the ABC check costs far more, and layers check their sizes at every call
    return type(value) is int or (isinstance(value, Integral) and not isinstance(value, bool))


def _refuse(owner: str, name: str, what: str, value: Any) -> ValueError:
    return ValueError(f"{owner}: {name} must be {what}, got {value!r}")


def integer(owner: str, name: str, value: Any) -> int:
    """``value`` as an ``int`` (any sign)."""
    if not is_integer(value):
        raise _refuse(owner, name, "an integer", value)
    return int(value)


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` as an ``int`` of at least 1."""
    if not is_integer(value) or value < 1:
        raise _refuse(owner, name, "a positive integer", value)
    return int(value)


def non_negative_int(owner: str, name: str, value: Any) -> int:
    """``value`` as an ``int`` of at least 0."""
    if not is_integer(value) or value < 0:
        raise _refuse(owner, name, "a non-negative integer", value)
    return int(value)


def _bound(x: float) -> str:
    return f"{x:g}"


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """The accepted range in words: ``"a positive number"``, ``"a number in [0, 1)"``, ..."""
    if low is None:
        if high is None:
            return "a real number"
        return f"a number {'<' if high_open else '<='} {_bound(high)}"
    if high is None:
        if low == 0 and low_open:
            return "a positive number"
        return f"a number {'>' if low_open else '>='} {_bound(low)}"
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    return f"a number in {lo}{_bound(low)}, {_bound(high)}{hi}"


def real(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a ``float`` within the given bounds (``None``: unbounded on that side).

    ``low_open`` / ``high_open`` exclude the bound itself. The message states the range, e.g.
    ``"a number in [0, 1)"``, or ``"a positive number"`` for ``low=0, low_open=True``.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        raise _refuse(owner, name, _range_text(low, high, low_open, high_open), value)
    return float(value)


def host_floats(owner: str, what: str, value: Any, dtype_name: str) -> np.ndarray:
    """``value`` (an array of any backend, or nested lists) as a host array of real, finite floats.

    Raises ``TypeError`` for ragged data or a non-float dtype (with the ``astype`` advice for
    integers and booleans) and ``ValueError`` for NaN or infinity; each message starts with
    ``owner``.
    """
    from anyml.backend import to_numpy

    try:
        host = to_numpy(value) if hasattr(value, "shape") else np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        msg = f"{owner}: {what} is not an array of numbers ({exc})"
        raise TypeError(msg) from exc
    if host.dtype.kind != "f":
        advice = (f"; convert it with .astype({dtype_name!r}) if it holds numbers"
                  if host.dtype.kind in "iub" else "")
        msg = f"{owner}: {what} must hold real floating-point numbers, got dtype {host.dtype}{advice}"
        raise TypeError(msg)
    if not np.isfinite(host).all():
        msg = f"{owner}: {what} holds NaN or infinity"
        raise ValueError(msg)
    return host
