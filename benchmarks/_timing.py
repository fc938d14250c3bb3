"""Timing helpers shared by the benchmarks: medians over repeated runs, in alternating blocks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """The median wall time of ``fn()`` in milliseconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def compare(fns: Sequence[Callable[[], object]], *, warmup: int = 3, repeats: int = 15, rounds: int = 3,
            syncs: Sequence[Callable[[], None]] | None = None, pause: float = 0.3) -> list[float]:
    """Median milliseconds of each function, measured in alternating blocks over several rounds.

    Each round runs every function's block (warm-up, then ``repeats`` timed calls) in turn; the result is
    the median of the per-round medians. Blocks, rather than interleaving single calls, and a pause
    before each block keep one library's spinning worker threads (OpenMP, OpenBLAS) from competing
    with the other's: with a short pause, timings on a 2-core machine doubled at random.
    """
    syncs = list(syncs) if syncs is not None else [lambda: None] * len(fns)
    per_round: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, sync, out in zip(fns, syncs, per_round, strict=True):
            time.sleep(pause)
            for _ in range(warmup):
                fn()
            out.append(median_ms(fn, repeats, sync))
    return [statistics.median(ms) for ms in per_round]


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive numbers."""
    return statistics.geometric_mean(values)
