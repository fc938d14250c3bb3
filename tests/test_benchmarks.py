"""The benchmark command stays runnable: every case builds and steps, and the table comes out as JSON.

Speed itself is never asserted here (see ``benchmarks/RESULTS.md``); these tests only keep the harness
in step with the layers it times.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

import anyml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    pytest.importorskip("torch", reason="the benchmarks time PyTorch alongside anyml")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "examples"))
    return importlib.import_module("run")


def test_every_case_builds_and_steps(bench):
    ctx = bench.Ctx(anyml.make_backend("numpy", seed=0), "cpu", 1)
    assert len([name for name in bench.CASES if "step" not in name]) == 21
    for make in bench.CASES.values():
        ours, theirs = make(ctx)
        ours()
        for step in theirs.values() if isinstance(theirs, dict) else [theirs]:
            step()


def test_pytorch_variants_are_timed_and_the_fastest_named(bench):
    ctx = bench.Ctx(anyml.make_backend("numpy", seed=0), "cpu", 1)
    _, variants = bench.CASES["Conv2D"](ctx)
    assert set(variants) == {"channels_first", "channels_last"}
    step, name, times = bench.pick_fastest(variants, lambda: None, repeats=1, rounds=1)
    assert step is variants[name] and set(times) == set(variants)
    assert times[name] == min(times.values())


def test_paired_ratio_is_the_median_of_per_round_ratios(bench):
    timing = importlib.import_module("_timing")
    assert timing.paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 3.0]) == 2.0


def test_table_is_written_as_json(bench, tmp_path):
    out = tmp_path / "bench.json"
    summary = bench.main(["--only", "Flatten", "Softmax", "--rounds", "1", "--repeats", "2",
                          "--warmup", "1", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(summary))
    assert [row["layer"] for row in written["rows"]] == ["Flatten", "Softmax"]
    for row in written["rows"]:
        assert row["anyml_ms"] > 0 and row["torch_ms"] > 0
        assert math.isclose(row["ratio"], row["anyml_ms"] / row["torch_ms"])
    assert written["worst"] in ("Flatten", "Softmax")


@pytest.fixture
def overhead(monkeypatch):
    pytest.importorskip("torch", reason="the benchmarks time PyTorch alongside anyml")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("overhead")


def test_overhead_references_do_the_layers_work(overhead):
    """The array-work reference of each batch-1 case computes what the layer computes."""
    import numpy as np

    be = anyml.make_backend("numpy", seed=0)
    for name, make in overhead.CASES.items():
        ours, ref, theirs = make(be, np.random.default_rng(0))
        Y, dX = ours()
        ref_out = ref()
        dX0 = dX[0] if isinstance(dX, list) else dX
        np.testing.assert_allclose(Y, ref_out[0], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(dX0, ref_out[1], rtol=1e-4, atol=1e-5, err_msg=name)
        theirs()


def test_overhead_table_as_json(overhead, tmp_path):
    out = tmp_path / "overhead.json"
    summary = overhead.main(["--only", "Softmax 10", "--rounds", "1", "--repeats", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    row = summary["rows"][0]
    assert math.isclose(row["overhead_us"], row["anyml_us"] - row["array_work_us"], rel_tol=1e-9)


@pytest.fixture
def scaling(bench, monkeypatch):
    return importlib.import_module("scaling")


def test_scaling_rows_cover_every_case_batch_and_length(scaling):
    rows = scaling.rows_to_run((1, 8), (8, 32))
    assert {(r[0], r[1]) for r in rows if r[2] is None} == {(c, b) for c in scaling.CASE_NAMES
                                                            for b in (1, 8)}
    assert [r for r in rows if r[2] is not None] == [("LSTM", 32, 8), ("LSTM", 32, 32)]


def test_every_scaling_case_builds_at_batch_one_and_a_short_sequence(bench, scaling):
    be = anyml.make_backend("numpy", seed=0)
    for name in scaling.CASE_NAMES:
        ours, theirs = bench.CASES[name](scaling._ctx(be, 1, 4))
        ours()
        for step in theirs.values() if isinstance(theirs, dict) else [theirs]:
            step()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_step_peak_memory_sees_a_temporary(scaling):
    import numpy as np

    def step():
        a = np.ones(40 * 2**20 // 8)  # 40 MB, touched
        return float(a[-1])

    assert scaling.step_peak_mb(step) > 30


def test_scaling_table_as_json(scaling, tmp_path):
    out = tmp_path / "scaling.json"
    summary = scaling.main(["--only", "FullyConnected", "--batches", "1", "--rounds", "1", "--repeats", "1",
                            "--no-memory", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert [(r["case"], r["batch"]) for r in summary["rows"]] == [("FullyConnected", 1)]


def test_blas_peak_and_conv_flops(bench):
    assert bench.blas_peak_gflops(size=64, repeats=1) > 0
    assert bench.conv2d_flops() == 3 * 2 * 32 * 1024 * 144 * 32


@pytest.fixture
def combine(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("combine")


def _run(ratios: dict[str, float]) -> dict:
    return {"backend": "numpy", "rows": [{"layer": k, "anyml_ms": 2 * v, "torch_ms": 2.0, "ratio": v,
                                          "torch_variant": None} for k, v in ratios.items()]}


def test_combined_runs_take_each_cases_median(combine, tmp_path):
    runs = [_run({"Conv2D": 2.5, "Add": 1.0, "digits CNN training step": 1.4}),
            _run({"Conv2D": 1.9, "Add": 4.0, "digits CNN training step": 1.2}),
            _run({"Conv2D": 2.1, "Add": 1.1, "digits CNN training step": 1.3})]
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(run))
    out = tmp_path / "combined.json"
    combined = combine.main([*map(str, paths), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(combined))
    rows = {r["layer"]: r for r in combined["rows"]}
    assert rows["Conv2D"]["ratio"] == 2.1 and rows["Conv2D"]["runs"] == [2.5, 1.9, 2.1]
    assert rows["Add"]["ratio"] == 1.1 and rows["Add"]["anyml_ms"] == 2.2
    assert combined["runs"] == 3 and combined["worst"] == "Conv2D"
    assert math.isclose(combined["geometric_mean_ratio"], math.sqrt(2.1 * 1.1))  # the step is no layer


def test_combining_runs_of_other_cases_is_refused(combine):
    with pytest.raises(ValueError, match=r"cases missing from some runs: \['Add'\]"):
        combine.combine([_run({"Conv2D": 2.0, "Add": 1.0}), _run({"Conv2D": 2.0})])
