"""How time and memory grow with the batch (and the sequence length), anyml against PyTorch.

For FullyConnected, Conv2D, LSTM and one training step of the digits CNN (the cases of
``benchmarks/run.py``, PyTorch again at its best) this times forward + backward at batch 1, 8, 64 and
512, and the LSTM also over 8, 32 and 128 steps at batch 32, and measures each side's peak memory:

* **time**: medians of paired blocks, as in ``run.py`` (``_timing.compare``);
* **peak memory**: in a fresh subprocess per row, after one warm-up step, the growth of the
  process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) during one more
  step above the resident set before it: the transient memory of a step, on the CPU (Linux only).
  The subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed blocks go back to the
  system at once and the resident set follows what is live (its timings are not used).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import run as bench  # benchmarks/ is on the path when run as a script
from _timing import compare, paired_ratio

import anyml

BATCHES = (1, 8, 64, 512)
LSTM_STEPS = (8, 32, 128)
CASE_NAMES = ("FullyConnected", "Conv2D", "LSTM", "digits CNN training step")


def rows_to_run(batches: tuple[int, ...], steps: tuple[int, ...]) -> list[tuple[str, int, int | None]]:
    """``(case, batch, steps)`` of every row: each case over the batches, then the LSTM over the
    sequence lengths at batch 32."""
    rows: list[tuple[str, int, int | None]] = [(name, b, None) for name in CASE_NAMES for b in batches]
    rows += [("LSTM", 32, t) for t in steps]
    return rows


def _ctx(be: anyml.Backend, batch: int, steps: int | None) -> bench.Ctx:
    ctx = bench.Ctx(be, "cpu", 1)
    ctx.batch_size, ctx.steps = batch, steps
    return ctx


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    msg = f"no {field} in /proc/self/status"
    raise RuntimeError(msg)


def step_peak_mb(step) -> float:
    """MB by which the peak resident set grows during one call of ``step`` (after a warm-up call).

    The garbage collector is run first and kept off during the call: a collection inside it would
    free other objects' memory and hide part of the step's own peak.
    """
    step()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        before = _status_kb("VmRSS")
        step()
        return max(0, _status_kb("VmHWM") - before) / 1024
    finally:
        if was_enabled:
            gc.enable()


def memory_row(name: str, batch: int, steps: int | None, variant: str | None) -> dict:
    """Peak memory of one row, both sides, in this process."""
    be = anyml.make_backend("numpy", dtype="float32", seed=0)
    ours, variants = bench.CASES[name](_ctx(be, batch, steps))
    theirs = variants[variant] if isinstance(variants, dict) else variants
    return {"anyml_mb": step_peak_mb(ours), "torch_mb": step_peak_mb(theirs)}


def _memory_in_subprocess(name: str, batch: int, steps: int | None, variant: str | None) -> dict:
    cmd = [sys.executable, __file__, "--memory-of", name, "--batch", str(batch)]
    if steps is not None:
        cmd += ["--row-steps", str(steps)]
    if variant is not None:
        cmd += ["--variant", variant]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(rows: list[tuple[str, int, int | None]], rounds: int, repeats: int, memory: bool) -> list[dict]:
    be = anyml.make_backend("numpy", dtype="float32", seed=0)
    table = []
    for name, batch, steps in rows:
        ours, variants = bench.CASES[name](_ctx(be, batch, steps))
        theirs, variant, _ = bench.pick_fastest(variants, lambda: None, repeats=3)
        # fewer calls for the big batches: about the same time per row
        reps = max(3, min(repeats, repeats * 8 // max(batch, 8)))
        ours_r, torch_r = compare([ours, theirs], warmup=2, repeats=reps, rounds=rounds)
        row = {"case": name, "batch": batch, "steps": steps, "anyml_ms": statistics.median(ours_r),
               "torch_ms": statistics.median(torch_r), "ratio": paired_ratio(ours_r, torch_r),
               "torch_variant": variant}
        if memory:
            row.update(_memory_in_subprocess(name, batch, steps, variant))
        table.append(row)
        mem = (f"  {row['anyml_mb']:9.1f}  {row['torch_mb']:9.1f}" if memory else "")
        label = f"{name}" + (f", {steps} steps" if steps else "")
        print(f"{label:>28}  {batch:5d}  {row['anyml_ms']:9.3f}  {row['torch_ms']:9.3f}  "
              f"{row['ratio']:6.2f}{mem}", flush=True)
    return table


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument("--steps", type=int, nargs="*", default=list(LSTM_STEPS),
                        help="LSTM sequence lengths (at batch 32)")
    parser.add_argument("--only", nargs="*", default=None, choices=CASE_NAMES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory columns")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--row-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_of is not None:  # the subprocess of one row's memory
        print(json.dumps(memory_row(args.memory_of, args.batch, args.row_steps, args.variant)))
        return None
    memory = not args.no_memory and Path("/proc/self/clear_refs").exists()
    rows = [r for r in rows_to_run(tuple(args.batches), tuple(args.steps))
            if args.only is None or r[0] in args.only]
    mem_head = f"  {'anyml MB':>9}  {'torch MB':>9}" if memory else ""
    print(f"{'case':>28}  {'batch':>5}  {'anyml ms':>9}  {'torch ms':>9}  {'ratio':>6}{mem_head}")
    table = run(rows, args.rounds, args.repeats, memory)
    summary = {"rows": table, "memory": "peak RSS growth during one step (MB)" if memory else None}
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
