"""bench.all: the table of targets built from given stage results (pure), the met/not-met logic, and the stages
that fail gracefully when a module they run is missing or broken."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import all as bench_all


def e2e_result(ratio: float = 3.0, ml_mib: float = 450.0) -> dict:
    return {
        "comparison": {
            "concurrency": 8,
            "ratio": ratio,
            "ours_req_per_s": 10.0 * ratio,
            "reference_req_per_s": 10.0,
            "ours_p95_ms": 250.0,
            "reference_p95_ms": 800.0,
        },
        "designs": {"faceauth": {"memory": {"ml_peak_mib": ml_mib, "api_peak_mib": 260.0, "api_main_peak_mib": 255}}},
        "cold_start": {"faceauth": {"median_s": 2.6, "seconds": [2.5, 2.6, 2.9]}},
    }


CEILING = {
    "ceiling": {"flops_per_image": 2.0e9, "flops_per_second": 120.0e9, "ceiling_img_per_s": 60.0, "per_model": {}},
    "analyze": {"throughput_per_s": 39.0},
}


def curve_point(size: int, p99: float, recall: float) -> dict:
    return {
        "size": size,
        "label": "HNSW ef 512",
        "p50_ms": p99 / 3,
        "p95_ms": p99 / 2,
        "p99_ms": p99,
        "recall_at_1": recall,
    }


def test_the_table_has_one_row_per_target_with_its_verdict():
    results = {
        "e2e": e2e_result(),
        "ceiling": CEILING,
        "milvus": {
            "curve": [curve_point(1_000_000, 14.3, 0.865), curve_point(100_000, 8.9, 0.99)],
            "p99_target_ms": 10.0,
            "recall_target": 0.99,
        },
    }
    rows = bench_all.build_rows(results)
    verdicts = {(r.stage, r.target): r.met for r in rows}
    assert [r.stage for r in rows] == ["e2e", "e2e", "memory", "memory", "cold start", "ceiling"] + ["milvus"] * 4
    assert all(met for (stage, _), met in verdicts.items() if stage in ("e2e", "memory", "cold start"))

    ceiling = next(r for r in rows if r.stage == "ceiling")
    assert ceiling.value == pytest.approx(39.0 / 60.0) and ceiling.met is True  # 0.65 >= the issue's 0.6
    assert "60.0 img/s" in ceiling.detail and "2.00 GFLOP/image" in ceiling.detail

    milvus = [r for r in rows if r.stage == "milvus"]
    assert "100,000 faces" in milvus[0].target  # ordered by size
    assert [r.met for r in milvus] == [True, True, False, False]  # 1M misses both p99 and recall

    table = bench_all.render_table(rows)
    assert table.count("\n") == len(rows) + 1  # header, rule, one line per row
    assert "| 3.00× (30.0 vs 10.0 req/s) | >= 2.50× | yes |" in table
    assert "| 0.865 | >= 0.990 | **no** |" in table
    assert bench_all.exit_status(rows) == 1


def test_a_stage_that_could_not_run_is_shown_as_not_measured_with_the_reason():
    results = {
        "e2e": {"error": "failed: TimeoutError: not ready"},
        "ceiling": {"error": "scripts/bench_ort.py is not there yet"},
        "milvus": {"error": "scripts/bench_milvus.py has no run_curve() yet"},
    }
    rows = bench_all.build_rows(results, milvus_sizes=[10_000, 1_000_000])
    assert len(rows) == 5 + 1 + 2 * 2  # every target of every stage, none judged
    assert all(r.met is None and r.value is None for r in rows)
    assert all(r.detail == results[{"memory": "e2e", "cold start": "e2e"}.get(r.stage, r.stage)]["error"] for r in rows)
    assert "not measured (scripts/bench_ort.py is not there yet)" in bench_all.render_table(rows)
    assert bench_all.exit_status(rows) == 2
    # A stage left out on purpose has no rows at all.
    assert [r.stage for r in bench_all.build_rows({"ceiling": CEILING})] == ["ceiling"]


def test_all_met_is_exit_status_0():
    rows = bench_all.build_rows({"e2e": e2e_result(), "ceiling": CEILING})
    assert bench_all.exit_status(rows) == 0
    rows = bench_all.build_rows({"e2e": e2e_result(ratio=2.49, ml_mib=1024.0)})
    assert [r.met for r in rows] == [False, True, True, True, True]  # 2.49x misses; exactly 1 GiB is within


@pytest.mark.parametrize(
    ("value", "op", "limit", "expected"),
    [
        (2.5, ">=", 2.5, True),
        (2.49, ">=", 2.5, False),
        (0.99, "<", 1.0, True),
        (1.0, "<", 1.0, False),
        (300.0, "<=", 300.0, True),
        (300.1, "<=", 300.0, False),
        (None, ">=", 2.5, None),
        (math.nan, "<=", 10.0, None),
    ],
)
def test_check(value, op, limit, expected):
    assert bench_all.check(value, op, limit) is expected


def test_check_refuses_an_unknown_comparison():
    with pytest.raises(ValueError):
        bench_all.check(1.0, "=>", 1.0)


def test_ratio():
    assert bench_all.ratio(30.0, 10.0) == 3.0
    assert bench_all.ratio(30.0, 0.0) is None and bench_all.ratio(None, 10.0) is None


# -- the FLOPs ceiling comes from another module: missing, broken or incomplete, it is reported, not raised ---


def write_bench_ort(folder: Path, body: str) -> Path:
    """A stand-in for bench.ort as module `bench_ort` of `folder` (found there when a process runs in it)."""
    (folder / "bench_ort.py").write_text(body)
    return folder


def test_the_ceiling_is_read_from_bench_ort_in_a_subprocess(tmp_path: Path):
    folder = write_bench_ort(
        tmp_path,
        "def ceiling(*, threads=None, batch=32, seconds=1.0):\n"
        "    return {'flops_per_image': 2e9, 'flops_per_second': 1.2e11, 'ceiling_img_per_s': 60.0,\n"
        "            'per_model': {'detector': {'batch': batch, 'seconds': seconds, 'threads': threads}}}\n",
    )
    result = bench_all.flops_ceiling(32, 2.5, timeout=60, module="bench_ort", cwd=folder)
    assert result["ceiling_img_per_s"] == 60.0
    assert result["per_model"]["detector"] == {"batch": 32, "seconds": 2.5, "threads": None}


def test_a_missing_or_broken_bench_ort_makes_the_stage_unavailable(tmp_path: Path):
    with pytest.raises(bench_all.StageUnavailable, match="not there yet"):
        bench_all.flops_ceiling(32, 1.0, timeout=60, module="bench_ort", cwd=tmp_path)
    write_bench_ort(tmp_path, "def ceiling(**kwargs):\n    raise RuntimeError('no models')\n")
    with pytest.raises(bench_all.StageUnavailable, match="no models"):
        bench_all.flops_ceiling(32, 1.0, timeout=60, module="bench_ort", cwd=tmp_path)
    write_bench_ort(tmp_path, "def ceiling(**kwargs):\n    return {'flops_per_image': 1.0}\n")
    with pytest.raises(bench_all.StageUnavailable, match="flops_per_second, ceiling_img_per_s, per_model"):
        bench_all.flops_ceiling(32, 1.0, timeout=60, module="bench_ort", cwd=tmp_path)


def test_the_ceiling_is_read_under_bench_orts_own_names():
    result = {"total_flops_per_image": 3e9, "aggregate_flops_per_s": 9e10, "ceiling_img_per_s": 30.0, "models": {}}
    normal = bench_all.normalise_ceiling(result)
    assert (normal["flops_per_image"], normal["flops_per_second"], normal["per_model"]) == (3e9, 9e10, {})
    assert normal["total_flops_per_image"] == 3e9  # the original keys stay


def test_run_stage_turns_a_failure_into_an_error_result():
    def broken(args):
        raise bench_all.StageUnavailable("scripts/bench_ort.py is not there yet")

    def crashing(args):
        raise KeyError("boom")

    assert bench_all.run_stage("ceiling", broken, None) == {"error": "scripts/bench_ort.py is not there yet"}
    assert bench_all.run_stage("milvus", crashing, None)["error"].startswith("failed: KeyError")


def test_batching_rows_compare_latency_at_one_and_throughput_at_eight():
    median = {
        "on": {1: {"p50_ms": 30.0, "throughput_per_s": 33.0}, 8: {"p50_ms": 200.0, "throughput_per_s": 40.0}},
        # as read back from the JSON report: level keys are strings
        "off": {"1": {"p50_ms": 40.0, "throughput_per_s": 25.0}, "8": {"p50_ms": 190.0, "throughput_per_s": 41.0}},
    }
    latency, throughput = bench_all.build_rows({"batching": {"median": median}})
    assert latency.value == pytest.approx(0.75) and latency.met is True
    assert throughput.value == pytest.approx(40.0 / 41.0) and throughput.met is True
    worse = {**median, "on": {**median["on"], 1: {"p50_ms": 44.0, "throughput_per_s": 22.0}}}
    assert bench_all.build_rows({"batching": {"median": worse}})[0].met is False
