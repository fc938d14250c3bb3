"""Combine several ``run.py --json`` results of the same command into one: per case, the median.

On a shared machine one run's ratio can move by 10-30% (see ``RESULTS.md``); the median over a few
runs taken back to back is steadier than any single run. Each case's ``ratio``, ``anyml_ms`` and
``torch_ms`` become the medians over the runs, its ``runs`` lists every run's ratio, and the geometric
mean and worst case are recomputed from the median ratios.

    python benchmarks/combine.py run1.json run2.json run3.json --json combined.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _timing import layer_summary, print_layer_summary  # benchmarks/ is on the path when run as a script


def combine(results: list[dict]) -> dict:
    """One result in ``run.py``'s format whose numbers are the medians over ``results``."""
    if not results:
        msg = "combine: no results given"
        raise ValueError(msg)
    names = [row["layer"] for row in results[0]["rows"]]
    by_name = [{row["layer"]: row for row in r["rows"]} for r in results]
    missing = sorted({n for n in names for table in by_name if n not in table})
    if missing:
        msg = f"combine: cases missing from some runs: {missing}"
        raise ValueError(msg)
    rows = []
    for name in names:
        runs = [table[name] for table in by_name]
        rows.append({"layer": name,
                     "anyml_ms": statistics.median(r["anyml_ms"] for r in runs),
                     "torch_ms": statistics.median(r["torch_ms"] for r in runs),
                     "ratio": statistics.median(r["ratio"] for r in runs),
                     "runs": [r["ratio"] for r in runs],
                     "torch_variant": runs[0].get("torch_variant")})
    out = {key: value for key, value in results[0].items() if key != "rows"}
    out.update(rows=rows, runs=len(results), **layer_summary(rows))
    for key in ("blas_peak_gflops", "conv2d_gflops"):
        if all(key in r for r in results):
            out[key] = statistics.median(r[key] for r in results)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by run.py --json")
    parser.add_argument("--json", type=Path, default=None, help="where to write the combined JSON")
    args = parser.parse_args(argv)
    try:
        out = combine([json.loads(p.read_text()) for p in args.results])
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(f"{'layer':>26}  {'ratio':>6}  runs")
    for row in out["rows"]:
        print(f"{row['layer']:>26}  {row['ratio']:6.2f}  {' '.join(f'{r:.2f}' for r in row['runs'])}")
    print_layer_summary(out, "median ratios")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
