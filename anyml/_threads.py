"""How many threads the CPU libraries (OpenBLAS/MKL/OpenMP under NumPy, PyTorch's intra-op pool) use.

Multithreaded BLAS helps large matrix products, but the products of a small model are short, and
OpenBLAS threads that spin while waiting for work slow everything down as soon as another process
takes a core: on a 2-core machine, one busy process made the digits example several times slower with
two BLAS threads and only a little slower with one. So by default :meth:`~anyml.model.Sequential.fit`,
``evaluate`` and ``predict`` run with **half the CPUs this process may use** (at least one: one thread
on a 2-core machine), restoring the previous setting afterwards. The default steps aside when the
user already chose: ``ANYML_NUM_THREADS`` sets it, and ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
or ``MKL_NUM_THREADS`` in the environment leave the libraries alone. :func:`set_num_threads` sets the
number for the whole process at once (like ``torch.set_num_threads``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from anyml._validate import positive_int

__all__ = ["default_num_threads", "get_num_threads", "set_num_threads", "training_threads"]

_explicit: int | None = None
_USER_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_num_threads() -> int | None:
    """The thread count used inside ``fit``/``evaluate``/``predict`` when none was set; ``None``
    when the environment already decides (``OMP_NUM_THREADS`` and the like)."""
    value = os.environ.get("ANYML_NUM_THREADS")
    if value:
        try:
            return positive_int("ANYML_NUM_THREADS", "the thread count", int(value))
        except ValueError as exc:
            msg = f"ANYML_NUM_THREADS must be a positive integer, got {value!r}"
            raise ValueError(msg) from exc
    if any(os.environ.get(name) for name in _USER_VARS):
        return None
    return max(1, _cpus() // 2)


def _apply(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it only PyTorch is limited
        pass
    else:
        threadpool_limits(limits=n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in the CPU libraries, for the whole process, from now on.

    Limits the BLAS and OpenMP pools that NumPy (and SciPy, scikit-learn) load, through
    ``threadpoolctl``, and PyTorch's intra-op pool when PyTorch is imported. ``None`` returns to
    anyml's default, applied during ``fit``/``evaluate``/``predict`` only (the libraries' own
    pools keep the size last set).

    Examples
    --------
    >>> import anyml
    >>> anyml.set_num_threads(1)        # doctest: +SKIP
    >>> anyml.get_num_threads()         # doctest: +SKIP
    1
    """
    global _explicit
    if n is None:
        _explicit = None
        return
    _explicit = positive_int("set_num_threads", "n", n)
    _apply(_explicit)


def get_num_threads() -> int | None:
    """The thread count set by :func:`set_num_threads`, else :func:`default_num_threads`."""
    return _explicit if _explicit is not None else default_num_threads()


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """Inside the block, the default thread count (unless :func:`set_num_threads` or the
    environment chose one); the previous pool sizes come back afterwards."""
    n = None if _explicit is not None else default_num_threads()
    if n is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            pass
        else:
            stack.enter_context(threadpool_limits(limits=n))
        torch = sys.modules.get("torch")
        if torch is not None:
            before = torch.get_num_threads()
            if before != n:
                torch.set_num_threads(n)
                stack.callback(torch.set_num_threads, before)
        yield
