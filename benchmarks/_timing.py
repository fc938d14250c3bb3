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


def compare(fns: Sequence[Callable[[], object]], *, warmup: int = 3, repeats: int = 15, rounds: int = 5,
            syncs: Sequence[Callable[[], None]] | None = None, pause: float = 0.3,
            warmup_s: float = 0.05) -> list[list[float]]:
    """Per-round median milliseconds of each function, measured in alternating blocks.

    Each round runs every function's block (warm-up, then ``repeats`` timed calls) in turn, so the
    blocks of one round see the machine in the same state; compare them with :func:`paired_ratio`.
    Blocks, rather than interleaving single calls, and a pause before each block keep one library's
    spinning worker threads (OpenMP, OpenBLAS) from competing with the other's: with a short pause,
    timings on a 2-core machine doubled at random. The warm-up runs at least ``warmup`` calls and
    ``warmup_s`` seconds: after the pause the machine takes a few milliseconds to reach full speed
    (the first ten calls of a 0.4 ms step ran up to 4x slower).
    """
    syncs = list(syncs) if syncs is not None else [lambda: None] * len(fns)
    per_round: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, sync, out in zip(fns, syncs, per_round, strict=True):
            time.sleep(pause)
            calls, until = 0, time.perf_counter() + warmup_s
            while calls < warmup or time.perf_counter() < until:
                fn()
                calls += 1
            sync()
            out.append(median_ms(fn, repeats, sync))
    return per_round


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median over rounds of ``numerator[i] / denominator[i]``.

    Pairing the blocks of one round cancels the slow spells of a shared machine that a ratio of two
    separate medians keeps.
    """
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive numbers."""
    return statistics.geometric_mean(values)


def layer_summary(rows: Sequence[dict]) -> dict:
    """``geometric_mean_ratio`` and ``worst`` (its name) over the rows of a layer table that are
    layers, not training steps; both ``None`` without any."""
    layers = [r for r in rows if "step" not in r["layer"]]
    if not layers:
        return {"geometric_mean_ratio": None, "worst": None}
    return {"geometric_mean_ratio": geometric_mean([r["ratio"] for r in layers]),
            "worst": max(layers, key=lambda r: r["ratio"])["layer"]}


def print_layer_summary(summary: dict, ratios: str) -> None:
    """Print the geometric mean of ``summary``'s ``ratios`` (the words naming them) and its worst
    layer, as :func:`layer_summary` gave them; nothing when the table had no layers."""
    if summary["geometric_mean_ratio"] is not None:
        print(f"geometric mean of the {ratios}: {summary['geometric_mean_ratio']:.2f}; "
              f"worst: {summary['worst']}")
