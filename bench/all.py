"""Every performance target in one command, and one table: target, measured, threshold, met or not.

Stages (each can be left out with its --skip-* flag):

* ``e2e`` -- ``bench.e2e``: search through both services against the reference design (the ratio at
  concurrency 8 and the p95), the services' memory under load and the ML service's cold start;
* ``ceiling`` -- ``/v1/analyze`` of ``faceauth ml`` at concurrency 8 (raw photo bodies, loadgen) against the
  FLOPs ceiling of the machine from ``bench.ort`` (``ceiling()``: FLOPs per image and the FLOP/s the
  models reach here, so the images/s the CPU could do if it did nothing but the models' arithmetic);
* ``batching`` -- ``/v1/analyze`` at concurrency 1 and 8 with micro-batching "auto" (the default) and off: the
  latency at concurrency 1 must not get worse, the throughput at 8 is reported beside it;
* ``milvus`` -- the 1:N search curve (p50/p95/p99, recall@1 per collection size) from ``bench.milvus``'s
  ``run_curve``.

A stage that fails is reported as not measured (with the reason) and the others still run.

Run::

    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.all --rounds 3 \\
        --json bench-results/all.json --markdown bench-results/all.md --plot docs/img/e2e_search.png
    ... --quick                          # a short smoke run of every stage
    ... --skip-milvus --skip-ceiling     # only the end-to-end stage
    ... --milvus-sizes 10000,100000      # the Milvus curve's sizes

Exit status: 0 when every target was measured and met, 1 when one was not met, 2 when a stage could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import ceiling_worker
from bench import e2e as bench_e2e
from bench import milvus as bench_milvus
from bench.loadgen import Payload, run_level, wait_for_quiet
from bench.photos import photo_paths
from bench.servers.services import TOKEN

PROJECT_DIR = Path(__file__).resolve().parent.parent
STAGES = ("e2e", "ceiling", "batching", "milvus")
ANALYZE_LEVEL = 8
DEFAULT_LEVELS = [1, 2, 4, 8, 16]
# The share of the FLOPs ceiling /v1/analyze has to reach (decode, resizes and HTTP are not model arithmetic).
DEFAULT_CEILING_TARGET = 0.6  # the performance issue: >= 60 % of the compute-bound ceiling


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StageUnavailable(RuntimeError):
    """A stage cannot run here (a module it needs is missing, fails, or lacks a figure)."""


# --------------------------------------------------------------------------------------------- the table


@dataclass
class Row:
    stage: str
    target: str
    value: float | None  # None: not measured
    unit: str
    op: str  # how value must compare with limit: ">=", ">", "<=", "<"
    limit: float
    detail: str = ""  # the figures behind a ratio, or why nothing was measured

    @property
    def met(self) -> bool | None:
        return check(self.value, self.op, self.limit)


def check(value: float | None, op: str, limit: float) -> bool | None:
    """Is `value op limit`? None when nothing was measured (or the value is NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if op not in (">=", ">", "<=", "<"):
        raise ValueError(f"unknown comparison {op!r}")
    return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _e2e_rows(result: dict[str, Any]) -> list[Row]:
    # On an empty report bench_e2e's verdicts are the same targets with nothing measured.
    error = result.get("error")
    verdicts = bench_e2e.verdicts({} if error else result)
    stages = ["e2e", "e2e", "memory", "memory", "cold start"]
    return [
        Row(stage, v["target"], v["measured"], v["unit"], v["op"], v["limit"], error or v.get("detail") or "")
        for stage, v in zip(stages, verdicts, strict=True)
    ]


def _ceiling_rows(result: dict[str, Any], target: float) -> list[Row]:
    name = f"ML /v1/analyze img/s at c={ANALYZE_LEVEL} / FLOPs ceiling"
    if "error" in result:
        return [Row("ceiling", name, None, "x", ">=", target, result["error"])]
    ceiling = result["ceiling"]
    measured = result["analyze"]["throughput_per_s"]
    value = ratio(measured, ceiling.get("ceiling_img_per_s"))
    detail = (
        f"{measured:.1f} img/s vs ceiling {ceiling['ceiling_img_per_s']:.1f} img/s "
        f"({ceiling['flops_per_image'] / 1e9:.2f} GFLOP/image at {ceiling['flops_per_second'] / 1e9:.1f} GFLOP/s)"
    )
    photos = ceiling.get("photos")
    if isinstance(photos, dict) and photos.get("ceiling_img_per_s"):  # the FLOPs the test photos really cost
        detail += f"; over the test photos the ceiling is {photos['ceiling_img_per_s']:.1f} img/s"
    return [Row("ceiling", name, value, "x", ">=", target, detail)]


def _batching_rows(result: dict[str, Any]) -> list[Row]:
    latency = "ML /v1/analyze p50 at c=1, micro-batching on / off"
    throughput = f"ML /v1/analyze img/s at c={ANALYZE_LEVEL}, micro-batching on / off"
    if "error" in result:
        return [Row("batching", latency, None, "x", "<=", 1.0, result["error"])]
    on, off = result["median"]["on"], result["median"]["off"]
    # JSON round trips turn the level keys into strings.
    pick = lambda side, level: side.get(level) or side.get(str(level))  # noqa: E731
    on1, off1, on8, off8 = pick(on, 1), pick(off, 1), pick(on, ANALYZE_LEVEL), pick(off, ANALYZE_LEVEL)
    return [
        Row(
            "batching",
            latency,
            ratio(on1["p50_ms"], off1["p50_ms"]),
            "x",
            "<=",
            1.0,
            f"{on1['p50_ms']:.1f} vs {off1['p50_ms']:.1f} ms",
        ),
        Row(
            "batching",
            throughput,
            ratio(on8["throughput_per_s"], off8["throughput_per_s"]),
            "x",
            ">=",
            0.95,  # on a CPU batching cannot add arithmetic speed; it must not cost throughput either
            f"{on8['throughput_per_s']:.1f} vs {off8['throughput_per_s']:.1f} img/s",
        ),
    ]


def _milvus_rows(result: dict[str, Any], sizes: Sequence[int]) -> list[Row]:
    p99_target = float(result.get("p99_target_ms") or bench_milvus.P99_TARGET_MS)
    recall_target = float(result.get("recall_target") or bench_milvus.RECALL_TARGET)
    if "error" in result:
        rows = []
        for size in sizes:
            rows.append(
                Row("milvus", f"1:N search p99 at {size:,} faces", None, "ms", "<=", p99_target, result["error"])
            )
            rows.append(Row("milvus", f"recall@1 at {size:,} faces", None, "", ">=", recall_target, result["error"]))
        return rows
    rows = []
    for point in sorted(result.get("curve") or [], key=lambda p: (p["size"], str(p.get("label")))):
        label = f"{point['size']:,} faces, {point.get('label') or ''}".rstrip(", ")
        detail = f"p50 {point['p50_ms']:.2f} ms, p95 {point['p95_ms']:.2f} ms"
        rows.append(Row("milvus", f"1:N search p99 ({label})", point["p99_ms"], "ms", "<=", p99_target, detail))
        rows.append(Row("milvus", f"recall@1 ({label})", point["recall_at_1"], "", ">=", recall_target))
    return rows


def build_rows(
    results: dict[str, dict[str, Any]],
    *,
    ceiling_target: float = DEFAULT_CEILING_TARGET,
    milvus_sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
) -> list[Row]:
    """The table's rows from each stage's result (a stage left out has no key; a failed one has "error")."""
    rows: list[Row] = []
    if "e2e" in results:
        rows += _e2e_rows(results["e2e"])
    if "ceiling" in results:
        rows += _ceiling_rows(results["ceiling"], ceiling_target)
    if "batching" in results:
        rows += _batching_rows(results["batching"])
    if "milvus" in results:
        rows += _milvus_rows(results["milvus"], milvus_sizes)
    return rows


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "":  # recall and other fractions: 0.985 must not read as 0.99
        return f"{value:.3f}"
    digits = 0 if unit == "MiB" or abs(value) >= 100 else 2
    return f"{value:.{digits}f} {unit}"


def render_table(rows: Sequence[Row]) -> str:
    lines = ["| stage | target | measured | threshold | met |", "|---|---|---|---|---|"]
    for row in rows:
        measured = "not measured" if row.value is None else _number(row.value, row.unit)
        if row.detail:
            measured += f" ({row.detail})"
        threshold = f"{row.op} {_number(row.limit, row.unit)}"
        state = {None: "not measured", True: "yes", False: "**no**"}[row.met]
        lines.append(f"| {row.stage} | {row.target} | {measured} | {threshold} | {state} |")
    return "\n".join(lines)


def exit_status(rows: Sequence[Row]) -> int:
    if any(row.met is False for row in rows):
        return 1
    if any(row.met is None for row in rows):
        return 2
    return 0


# --------------------------------------------------------------------------------------------- stages


def stage_e2e(args: argparse.Namespace) -> dict[str, Any]:
    argv = ["--shared-dir", str(args.shared_dir), "--rounds", str(args.rounds)]
    if not args.quick or args.concurrency != DEFAULT_LEVELS:  # --quick picks its own levels unless told
        argv += ["--concurrency", ",".join(map(str, args.concurrency))]
    if args.e2e_requests:
        argv += ["--requests", str(args.e2e_requests)]
    if args.log_dir:
        argv += ["--log-dir", str(args.log_dir / "e2e")]
    if args.quick:
        argv.append("--quick")
    e2e_args = bench_e2e.parse_args(argv)
    report = asyncio.run(bench_e2e.run_benchmark(e2e_args))
    print(bench_e2e.render(report), flush=True)
    if args.plot:
        say(f"plot {bench_e2e.plot(report, args.plot)}")
    return report


def flops_ceiling(
    batch: int, seconds: float, timeout: float, *, module: str = "bench.ort", cwd: Path = PROJECT_DIR
) -> dict[str, Any]:
    """`<module>.ceiling(threads=None, batch=..., seconds=...)` in a process of its own (bench.ceiling_worker,
    started in `cwd`): its sessions and their memory go away with it. StageUnavailable if the module is missing,
    fails or lacks a figure the table needs."""
    cmd = [sys.executable, "-m", "bench.ceiling_worker", module, str(batch), str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if done.returncode == ceiling_worker.NO_MODULE:
        raise StageUnavailable(f"{module} is not there yet: the FLOPs ceiling cannot be computed")
    lines = [line for line in done.stdout.splitlines() if line.startswith(ceiling_worker.PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise StageUnavailable(f"{module}.ceiling() failed (exit {done.returncode}): {' | '.join(tail)}")
    return normalise_ceiling(json.loads(lines[-1].removeprefix(ceiling_worker.PREFIX)))


# The figures the table needs, under the names the brief gave and those bench.ort.ceiling() uses.
_CEILING_NAMES = {
    "flops_per_image": ("flops_per_image", "total_flops_per_image"),
    "flops_per_second": ("flops_per_second", "aggregate_flops_per_s"),
    "ceiling_img_per_s": ("ceiling_img_per_s",),
    "per_model": ("per_model", "models"),
}


def normalise_ceiling(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with the table's keys filled in from whichever name it uses; StageUnavailable if one is missing."""
    out = dict(result)
    missing = []
    for key, names in _CEILING_NAMES.items():
        value = next((result[n] for n in names if result.get(n) is not None), None)
        if value is None:
            missing.append(key)
        out[key] = value
    if missing:
        raise StageUnavailable(f"the ceiling returned no {', '.join(missing)}")
    return out


async def measure_analyze(
    args: argparse.Namespace, work: Path, *, levels: Sequence[int] = (ANALYZE_LEVEL,), env: dict[str, str] | None = None
) -> dict[int, dict[str, Any]]:
    """/v1/analyze of `faceauth ml` at each concurrency, every photo sent as the Face API sends it (the raw
    bytes as application/octet-stream, bodies built before timing). `env` overrides the service's settings."""
    photos = photo_paths(args.shared_dir)
    payloads = [Payload(p.read_bytes(), "application/octet-stream", p.name) for p in photos]
    e2e_like = argparse.Namespace(
        shared_dir=args.shared_dir, log_dir=args.log_dir or work, ready_timeout=300.0
    )  # what bench_e2e.ml_service reads
    label = "-".join(f"{k}={v}" for k, v in (env or {}).items()) or "defaults"
    service = bench_e2e.ml_service(bench_e2e.OURS, e2e_like, work, f"analyze-ml-{label}.log")
    service.env.update(env or {})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=max(levels) * 2)
    results: dict[int, dict[str, Any]] = {}
    with service:
        base_url = service.url
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=120.0) as client:
            for level in levels:
                await wait_for_quiet(timeout_s=args.quiet_timeout)
                result = await run_level(
                    client,
                    f"{base_url}/v1/analyze",
                    payloads,
                    concurrency=level,
                    requests=args.analyze_requests,
                    warmup=16 if not args.quick else 4,
                    service="faceauth",
                    endpoint="/v1/analyze",
                    server=service,
                    max_seconds=900.0,
                )
                if not result.latencies_ms:  # e.g. a model missing: every answer a 503
                    raise RuntimeError(f"/v1/analyze answered no 2xx at c={level} ({label}): {result.errors}")
                say(f"/v1/analyze c={level} ({label}): {result.throughput:.1f} img/s, p50 {result.p50:.0f} ms")
                results[level] = result.summary()
    return results


def stage_batching(args: argparse.Namespace) -> dict[str, Any]:
    """/v1/analyze at concurrency 1 and 8 with micro-batching as configured by default ("auto") and without it
    ("off"), alternating."""
    runs: dict[str, list[dict[int, dict[str, Any]]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="bench-all-batching-") as tmp:
        for _ in range(1 if args.quick else max(1, args.rounds)):
            for mode, env in (("off", {"ML_SERVICE_BATCHING": "off"}), ("on", {"ML_SERVICE_BATCHING": "auto"})):
                runs[mode].append(asyncio.run(measure_analyze(args, Path(tmp), levels=(1, ANALYZE_LEVEL), env=env)))

    def median_of(mode: str, level: int, key: str) -> float:
        values = sorted(run[level][key] for run in runs[mode])
        return values[len(values) // 2]

    summary = {
        mode: {
            level: {key: median_of(mode, level, key) for key in ("throughput_per_s", "p50_ms", "p95_ms")}
            for level in (1, ANALYZE_LEVEL)
        }
        for mode in runs
    }
    return {"runs": runs, "median": summary}


def stage_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-all-ml-") as tmp:
        analyze = asyncio.run(measure_analyze(args, Path(tmp)))[ANALYZE_LEVEL]
    seconds = 3.0 if args.quick else args.ceiling_seconds
    say(f"FLOPs ceiling (bench.ort.ceiling, batch 32, {seconds:g} s) ...")
    try:
        ceiling = flops_ceiling(32, seconds, timeout=1800.0)
    except StageUnavailable as exc:  # keep the measured img/s: only the ceiling is missing
        return {"analyze": analyze, "error": f"{exc}; /v1/analyze measured {analyze['throughput_per_s']:.1f} img/s"}
    return {
        "ceiling": ceiling,
        "analyze": analyze,
        "ratio": ratio(analyze["throughput_per_s"], ceiling["ceiling_img_per_s"]),
        "achieved_flops_per_second": analyze["throughput_per_s"] * ceiling["flops_per_image"],
    }


def stage_milvus(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [10_000] if args.quick else args.milvus_sizes
    options: dict[str, Any] = {"queries": 200 if args.quick else args.milvus_queries}
    with tempfile.TemporaryDirectory(prefix="bench-all-milvus-") as tmp:
        out = args.log_dir / "milvus" if args.log_dir else Path(tmp)
        report = bench_milvus.run_curve(sizes, backend=args.milvus_backend, out=out, **options)
    return {
        "backend": args.milvus_backend,
        "sizes": sizes,
        "curve": report.get("curve", []),
        "wall_s": report.get("wall_s"),
        "loadavg": report.get("loadavg"),
        "p99_target_ms": bench_milvus.P99_TARGET_MS,
        "recall_target": bench_milvus.RECALL_TARGET,
    }


def run_stage(name: str, fn, args: argparse.Namespace) -> dict[str, Any]:
    """A stage's result, or {"error": why} when it could not run: the other stages go on."""
    say(f"== stage {name}")
    try:
        return fn(args)
    except StageUnavailable as exc:
        say(f"stage {name} not run: {exc}")
        return {"error": str(exc)}
    except Exception as exc:  # a crashed stage must not cost the figures of the others
        say(f"stage {name} failed: {type(exc).__name__}: {exc}")
        return {"error": f"failed: {type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.splitlines()[0])
    numbers = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every stage")
    for stage in STAGES:
        parser.add_argument(f"--skip-{stage}", action="store_true", help=f"leave out the {stage} stage")
    parser.add_argument("--rounds", type=int, default=1, help="e2e: alternating rounds, median kept (default 1)")
    parser.add_argument("--concurrency", type=numbers, default=DEFAULT_LEVELS, help="e2e levels")
    parser.add_argument("--e2e-requests", type=int, default=None, help="e2e: timed requests per level")
    parser.add_argument("--plot", type=Path, default=None, help="e2e: req/s and p95 vs concurrency into this PNG")
    parser.add_argument("--analyze-requests", type=int, default=192, help="ceiling: timed /v1/analyze requests")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0, help="ceiling: seconds bench.ort times a model")
    parser.add_argument(
        "--ceiling-target",
        type=float,
        default=DEFAULT_CEILING_TARGET,
        help=f"ceiling: share of the FLOPs ceiling to reach (default {DEFAULT_CEILING_TARGET})",
    )
    parser.add_argument("--milvus-sizes", type=numbers, default=[10_000, 100_000, 1_000_000], help="curve sizes")
    parser.add_argument("--milvus-backend", default="milvus235", help="milvus: lite | milvus235 | uri=...")
    parser.add_argument("--milvus-queries", type=int, default=1000, help="milvus: timed searches per size")
    parser.add_argument("--quiet-timeout", type=float, default=30.0, help="longest wait for a quiet machine, s")
    parser.add_argument("--shared-dir", type=Path, default=None, help="default: $FACEAUTH_SHARED_DIR")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs and stage files here")
    parser.add_argument("--json", type=Path, default=None, help="write every stage's figures (JSON) here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table and details (markdown) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.analyze_requests = min(args.analyze_requests, 24)
    shared = args.shared_dir or os.environ.get("FACEAUTH_SHARED_DIR")
    if not shared and not (args.skip_e2e and args.skip_ceiling):
        parser.error("set FACEAUTH_SHARED_DIR or pass --shared-dir")
    args.shared_dir = Path(shared).resolve() if shared else None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    stages = {"e2e": stage_e2e, "ceiling": stage_ceiling, "batching": stage_batching, "milvus": stage_milvus}
    results = {name: run_stage(name, fn, args) for name, fn in stages.items() if not getattr(args, f"skip_{name}")}
    sizes = [10_000] if args.quick else args.milvus_sizes
    rows = build_rows(results, ceiling_target=args.ceiling_target, milvus_sizes=sizes)
    table = render_table(rows)
    print()
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "started_utc": started.isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else list(argv),
            "machine": bench_e2e.machine(),
            "rows": [{**asdict(r), "met": r.met} for r in rows],
            "stages": results,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        say(f"wrote {args.json}")
    if args.markdown:
        parts = ["## Performance targets", "", f"Run on {started:%Y-%m-%d %H:%M} UTC.", "", table]
        if "e2e" in results and "error" not in results["e2e"]:
            parts += ["", "### End to end", "", bench_e2e.render(results["e2e"])]
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(parts) + "\n")
        say(f"wrote {args.markdown}")
    return exit_status(rows)


if __name__ == "__main__":
    raise SystemExit(main())
