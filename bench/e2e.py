"""End-to-end 1:N search through both services: this project against the reference design, in one run.

Two pairs of services, each started by this script as processes on free loopback ports, one pair at a time (never
two pairs alive while one is measured, so they never share the cores):

* **reference** -- ``python -m bench.reference_design ml`` + ``api``: the reference design rebuilt (two ML calls per
  request with base64 JSON, every check decoding and preprocessing the photo itself, default ONNX Runtime
  sessions, a sync httpx client in the Face API); see that file's docstring;
* **faceauth** -- ``faceauth ml`` + ``faceauth api`` on their embedded defaults (milvus-lite file and local
  images in a temporary folder), API keys off (``FACEAUTH_AUTH_DISABLED=true``).

For each pair: enrol the gallery (``POST /v1/faces/insert``, the photos of ``faces/deepface`` that pass this
project's quality checks, the same photos for both), search each photo once (checks that it finds itself; also
the warm-up), then for each concurrency a warm-up batch and a fixed number of timed ``POST /v1/faces/search``
requests (multipart, built before timing) from N concurrent clients. Printed per level: req/s, p50/p95/p99,
errors, the CPU both services used and what other work on the machine used. The RSS of each service's whole
process tree is sampled from /proc throughout (the embedded milvus-lite is a child of the Face API); the peak
under load is reported. Cold start: process start -> ``/readyz`` 200 of each ML service, median of 3 starts.

Targets checked: this project's search throughput at concurrency 8 >= 2.5x the reference's with a lower p95; ML
service <= 1 GiB RSS and Face API <= 300 MiB under load; ML service ready in <= 10 s.

Run::

    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.e2e --rounds 3 \\
        --json bench-results/e2e.json --markdown bench-results/e2e.md --plot docs/img/e2e_search.png
    ... --quick                      # a short smoke run (c=1,8, 24 requests, one cold start)
    ... --concurrency 1,4,8          # choose the levels

The machine is shared with whatever else runs on it: before each level the script waits (bounded) for the rest
of the machine to be quiet, measures every process's CPU time, and measures a level again when other work
disturbed it; ``--rounds`` alternates the pairs and keeps each level's median round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import LoadResult, Payload, multipart_payload, percentile, run_level, wait_for_quiet
from bench.machine import command_line, machine_facts, process_table, tree_rss_mib
from bench.photos import accepted_by_ml, photo_paths
from bench.servers.process import HOST, ServiceProcess, free_port
from bench.servers.services import TOKEN, api_env, faceauth_argv, ml_env, spoof_model_env

TENANT = "bench"
REFERENCE = "reference"
OURS = "faceauth"
DESIGNS = (REFERENCE, OURS)

TARGET_RATIO = 2.5
RATIO_LEVEL = 8
ML_RSS_LIMIT_MIB = 1024.0
API_RSS_LIMIT_MIB = 300.0
COLD_START_LIMIT_S = 10.0
COMMAND = "FACEAUTH_SHARED_DIR=../shared uv run python -m bench.e2e"  # how reports say it was run
COLD_START_POLL_S = 0.05  # readiness polled this often: cold start is measured to that resolution


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- processes


class PairCPU:
    """Both services' CPU as one `server` for run_level, so what they use is not counted as other work.

    Every reading is kept per service (`readings`), so a level's CPU can also be split between them."""

    def __init__(self, **services: ServiceProcess) -> None:
        self.services = services
        self.readings: list[dict[str, float | None]] = []

    def cpu_seconds(self) -> float | None:
        values = {name: s.cpu_seconds() for name, s in self.services.items()}
        self.readings.append(values)
        return None if any(v is None for v in values.values()) else sum(values.values())  # type: ignore[arg-type]

    def cores_since(self, index: int, seconds: float) -> dict[str, float | None]:
        """Cores each service used between reading `index` and the one after it, over `seconds` of wall time."""
        before, after = self.readings[index], self.readings[index + 1]
        return {
            name: None
            if before[name] is None or after[name] is None or seconds <= 0
            else round((after[name] - before[name]) / seconds, 3)  # type: ignore[operator]
            for name in self.services
        }


class RssSampler:
    """Samples the process-tree RSS of named pids in a thread; keeps the peak per phase ("enrol", "c8", ...)."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.phase = "start"
        self.peaks: dict[str, dict[str, float]] = {}  # phase -> "<name>" / "<name>_main" -> MiB
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._t0 = time.monotonic()

    def sample(self) -> None:
        table = process_table()
        row: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 2), "phase": self.phase}
        peaks = self.peaks.setdefault(self.phase, {})
        for name, pid in self.pids.items():
            tree, own = tree_rss_mib(pid, table) or (0.0, 0.0)
            row[name], row[f"{name}_main"] = round(tree, 1), round(own, 1)
            peaks[name] = max(peaks.get(name, 0.0), tree)
            peaks[f"{name}_main"] = max(peaks.get(f"{name}_main", 0.0), own)
        self.samples.append(row)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):  # ends with the benchmark of the pair
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self, name: str, phases: Sequence[str] | None = None) -> float | None:
        values = [p[name] for ph, p in self.peaks.items() if name in p and (phases is None or ph in phases)]
        return round(max(values), 1) if values else None


def embedded_api_env(ml_url: str, data_dir: Path) -> dict[str, str]:
    """The Face API on its embedded defaults whatever this shell points it at (no Milvus server, no S3)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("FACEAUTH_MILVUS_", "FACEAUTH_MINIO_"))}
    for name in ("FACEAUTH_OBJECT_STORE", "FACEAUTH_LOCAL_STORE_DIR"):
        keep.pop(name, None)
    return api_env(ml_url, data_dir, {"FACEAUTH_AUTH_DISABLED": "true"}, environ=keep)


def ml_argv(design: str, port: int) -> list[str]:
    if design == REFERENCE:
        return [sys.executable, "-m", "bench.reference_design", "ml", "--host", HOST, "--port", str(port)]
    return faceauth_argv("ml", port)


def api_argv(design: str, port: int, ml_url: str, data_dir: Path) -> list[str]:
    if design == REFERENCE:
        tail = ["--ml-url", ml_url, "--data-dir", str(data_dir)]
        return [sys.executable, "-m", "bench.reference_design", "api", "--host", HOST, "--port", str(port), *tail]
    return faceauth_argv("api", port)


def ml_service(design: str, args: argparse.Namespace, work: Path, log_name: str) -> ServiceProcess:
    """The design's ML service on a free port (not started: use it as a context manager)."""
    port = free_port()
    env = ml_env({"ML_SERVICE_AUTO_FETCH": "false", **spoof_model_env(args.shared_dir)})
    return ServiceProcess(
        ml_argv(design, port),
        f"http://{HOST}:{port}",
        name=f"{design} ML service",
        env=env,
        cwd=work,
        log_path=args.log_dir / log_name,
        ready_timeout=args.ready_timeout,
        poll_s=COLD_START_POLL_S,
    )


# --------------------------------------------------------------------------------------------- inputs


def face_id(index: int) -> str:
    return f"p{index:03d}"


def search_payloads(photos: Sequence[Path]) -> list[Payload]:
    return [
        multipart_payload({"file": (p.name, p.read_bytes(), "image/jpeg")}, {"tenant": TENANT}, name=p.name)
        for p in photos
    ]


# --------------------------------------------------------------------------------------------- one pair


@dataclass
class PairRun:
    design: str
    round_no: int
    startup_s: dict[str, float] = field(default_factory=dict)
    enrol: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    results: list[LoadResult] = field(default_factory=list)
    service_cores: dict[int, dict[str, float | None]] = field(default_factory=dict)  # level -> ml/api cores
    memory: dict[str, Any] = field(default_factory=dict)


async def enrol(client: httpx.AsyncClient, api_url: str, photos: Sequence[Path]) -> dict[str, Any]:
    """Insert every photo (4 at a time); which ones each design refused and why (status)."""
    gate = asyncio.Semaphore(4)
    refused: dict[str, str] = {}

    async def one(i: int, path: Path) -> None:
        async with gate:
            files = {"file": (path.name, path.read_bytes(), "image/jpeg")}
            try:
                response = await client.post(
                    f"{api_url}/v1/faces/insert", files=files, data={"id": face_id(i), "tenant": TENANT}
                )
                if not response.is_success:
                    refused[path.name] = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                refused[path.name] = type(exc).__name__

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(photos)))
    return {
        "photos": len(photos),
        "enrolled": len(photos) - len(refused),
        "refused": refused,
        "seconds": round(time.perf_counter() - started, 2),
    }


async def check_searches(client: httpx.AsyncClient, api_url: str, payloads: Sequence[Payload]) -> dict[str, Any]:
    """Each photo searched once, one at a time: does it find itself first? (Also warms both services up.)"""
    found_self, not_passed, failed = 0, [], {}
    latencies = []
    for i, payload in enumerate(payloads):
        started = time.perf_counter()
        try:
            response = await client.post(f"{api_url}/v1/faces/search", content=payload.content, headers=payload.headers)
        except httpx.HTTPError as exc:
            failed[payload.name] = type(exc).__name__
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        if not response.is_success:
            failed[payload.name] = f"HTTP {response.status_code}"
            continue
        body = response.json()
        if not body.get("imageQualityAssessment", {}).get("passed"):
            not_passed.append(payload.name)
        matches = body.get("searchResult", {}).get("matches") or []
        if matches and (matches[0].get("id") or matches[0].get("face_id")) == face_id(i):
            found_self += 1
    return {
        "searches": len(payloads),
        "top1_self": found_self,
        "quality_refused": not_passed,
        "failed": failed,
        "p50_ms_one_at_a_time": round(percentile(latencies, 50), 1) if latencies else None,
    }


async def measure_level(
    client: httpx.AsyncClient,
    url: str,
    payloads: Sequence[Payload],
    design: str,
    level: int,
    cpu: PairCPU,
    args: argparse.Namespace,
) -> tuple[LoadResult, dict[str, float | None]]:
    """One level; measured again (at most --retries times) when other work disturbed it; the least disturbed
    attempt is kept, with the cores each service used during it."""
    attempts: list[tuple[LoadResult, dict[str, float | None]]] = []
    for attempt in range(args.retries + 1):
        await wait_for_quiet(max_cores=args.quiet_cores, timeout_s=args.quiet_timeout)
        first_reading = len(cpu.readings)
        result = await run_level(
            client,
            url,
            payloads,
            concurrency=level,
            requests=args.requests,
            warmup=args.warmup,
            service=design,
            endpoint="/v1/faces/search",
            server=cpu,
            max_seconds=args.level_timeout,
        )
        split = cpu.cores_since(first_reading, result.duration_s)
        attempts.append((result, split))
        other = result.other_cores or 0.0
        say(
            f"[{design}] c={level}: {result.throughput:.1f} req/s, p50 {result.p50:.0f} ms, p95 {result.p95:.0f} ms, "
            f"errors {result.error_count}, cores: ML {split['ml'] or 0:.2f}, API {split['api'] or 0:.2f}, "
            f"other {other:.2f}"
            + (" (disturbed, again)" if result.disturbed(args.quiet_cores) and attempt < args.retries else "")
        )
        if not result.disturbed(args.quiet_cores):
            break
    return min(attempts, key=lambda a: a[0].other_cores or 0.0)


async def bench_pair(design: str, args: argparse.Namespace, gallery: Sequence[Path], round_no: int) -> PairRun:
    run = PairRun(design, round_no)
    suffix = "" if round_no == 1 else f"-round{round_no}"
    with tempfile.TemporaryDirectory(prefix=f"bench-e2e-{design}-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        say(f"[{design}] starting the ML service and the Face API (round {round_no})")
        ml = ml_service(design, args, work, f"{design}-ml{suffix}.log")
        with ml:
            api_port = free_port()
            api_url = f"http://{HOST}:{api_port}"
            api = ServiceProcess(
                api_argv(design, api_port, ml.url, data_dir),
                api_url,
                name=f"{design} Face API",
                env=embedded_api_env(ml.url, data_dir),
                cwd=work,
                log_path=args.log_dir / f"{design}-api{suffix}.log",
                ready_timeout=args.ready_timeout,
                poll_s=COLD_START_POLL_S,
            )
            with api:
                await bench_started_pair(run, design, ml, api, api_url, args, gallery)
        say(f"[{design}] stopped")
    return run


async def bench_started_pair(
    run: PairRun,
    design: str,
    ml: ServiceProcess,
    api: ServiceProcess,
    api_url: str,
    args: argparse.Namespace,
    gallery: Sequence[Path],
) -> None:
    """Enrol, check, then every level, sampling both services' memory throughout."""
    run.startup_s = {"ml": round(ml.startup_s or 0, 2), "api": round(api.startup_s or 0, 2)}
    assert ml.pid is not None and api.pid is not None
    limits = httpx.Limits(max_connections=max(args.concurrency) * 2)
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    with RssSampler({"ml": ml.pid, "api": api.pid}, args.rss_interval) as rss:
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            rss.phase = "enrol"
            run.enrol = await enrol(client, api_url, gallery)
            say(f"[{design}] enrolled {run.enrol['enrolled']}/{len(gallery)} in {run.enrol['seconds']} s")
            payloads = search_payloads(gallery)
            rss.phase = "check"
            run.check = await check_searches(client, api_url, payloads)
            say(f"[{design}] each photo once: {run.check['top1_self']}/{len(payloads)} found themselves first")
            cpu = PairCPU(ml=ml, api=api)
            for level in args.concurrency:
                rss.phase = f"c{level}"
                result, split = await measure_level(
                    client, f"{api_url}/v1/faces/search", payloads, design, level, cpu, args
                )
                result.service = design
                run.results.append(result)
                run.service_cores[level] = split
            rss.phase = "idle"
    load_phases = ["enrol", "check", *(f"c{level}" for level in args.concurrency)]
    run.memory = {
        "ml_peak_mib": rss.peak("ml", load_phases),
        "api_peak_mib": rss.peak("api", load_phases),
        "api_main_peak_mib": rss.peak("api_main", load_phases),
        "ml_after_start_mib": rss.peak("ml", ["start"]),
        "api_after_start_mib": rss.peak("api", ["start"]),
        "per_phase": {ph: {k: round(v, 1) for k, v in p.items()} for ph, p in rss.peaks.items()},
    }


# --------------------------------------------------------------------------------------------- cold start


async def cold_starts(args: argparse.Namespace, photos: Sequence[Path]) -> tuple[dict[str, Any], list[Path], dict]:
    """Start each ML service `--cold-starts` times (alternating; process start -> /readyz 200), and with this
    project's first start pick the gallery."""
    times: dict[str, list[float]] = {d: [] for d in args.designs}
    statuses: dict[str, list[str]] = {d: [] for d in args.designs}
    gallery: list[Path] | None = None
    refused: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-start-") as tmp:
        for i in range(max(1, args.cold_starts)):
            for design in args.designs:
                await wait_for_quiet(max_cores=args.quiet_cores, timeout_s=args.quiet_timeout)
                service = ml_service(design, args, Path(tmp), f"{design}-ml-start{i + 1}.log")
                started = time.perf_counter()
                with service:
                    elapsed = time.perf_counter() - started
                    times[design].append(round(elapsed, 3))
                    statuses[design].append(str((service.ready_body or {}).get("status", "?")))
                    say(f"[{design}] ML service ready in {elapsed:.2f} s (start {i + 1})")
                    if design == OURS and gallery is None:
                        gallery, refused = await asyncio.to_thread(accepted_by_ml, service.url, TOKEN, photos)
    if gallery is None:  # this project's service was not among the designs: pick the gallery with it anyway
        with (
            tempfile.TemporaryDirectory(prefix="bench-e2e-pick-") as tmp,
            ml_service(OURS, args, Path(tmp), "faceauth-ml-gallery.log") as service,
        ):
            gallery, refused = await asyncio.to_thread(accepted_by_ml, service.url, TOKEN, photos)
    summary = {
        design: {
            "seconds": times[design],
            "median_s": round(percentile(times[design], 50), 3),
            "ready_status": statuses[design],
        }
        for design in args.designs
    }
    return summary, gallery, refused


# --------------------------------------------------------------------------------------------- summary


def median_round(results: Sequence[LoadResult]) -> LoadResult:
    """The round with the median throughput (a real measurement, with its own latencies)."""
    ordered = sorted(results, key=lambda r: r.throughput)
    return ordered[(len(ordered) - 1) // 2]


def merge_rounds(runs: Sequence[PairRun], levels: Sequence[int]) -> list[LoadResult]:
    merged = []
    for level in levels:
        candidates = [r for run in runs for r in run.results if r.concurrency == level]
        if candidates:
            merged.append(median_round(candidates))
    return merged


def level_row(result: LoadResult, runs: Sequence[PairRun] = ()) -> dict[str, Any]:
    """A level's summary, with the cores each service used (from the round the result belongs to)."""
    row = result.summary()
    split = (
        next((run.service_cores.get(result.concurrency) for run in runs if any(r is result for r in run.results)), None)
        or {}
    )
    row["ml_cores"], row["api_cores"] = split.get("ml"), split.get("api")
    return row


def comparison(levels: dict[str, list[dict[str, Any]]], level: int = RATIO_LEVEL) -> dict[str, Any]:
    """This project against the reference at `level`: the throughput ratio and whether our p95 is lower."""

    def at(design: str) -> dict[str, Any] | None:
        return next((r for r in levels.get(design, []) if r["concurrency"] == level), None)

    ours, ref = at(OURS), at(REFERENCE)
    if ours is None or ref is None or not ref["throughput_per_s"]:
        return {"concurrency": level, "ratio": None, "p95_lower": None}
    return {
        "concurrency": level,
        "ours_req_per_s": ours["throughput_per_s"],
        "reference_req_per_s": ref["throughput_per_s"],
        "ratio": round(ours["throughput_per_s"] / ref["throughput_per_s"], 3),
        "ours_p95_ms": ours["p95_ms"],
        "reference_p95_ms": ref["p95_ms"],
        "p95_lower": ours["p95_ms"] < ref["p95_ms"],
        # Other work on the machine during each measurement: a ratio of unequally disturbed levels is suspect.
        "ours_other_cores": ours.get("other_cores"),
        "reference_other_cores": ref.get("other_cores"),
    }


def disturbance_gap(comp: dict[str, Any], tolerance: float = 0.25) -> float | None:
    """How many more cores other work took during one design's measurement than the other's, when that is
    more than `tolerance`; else None."""
    ours, ref = comp.get("ours_other_cores"), comp.get("reference_other_cores")
    if ours is None or ref is None or abs(ours - ref) <= tolerance:
        return None
    return round(abs(ours - ref), 3)


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The e2e, memory and cold-start targets as rows: target, measured value, threshold, met (None: not measured)."""
    rows = []
    comp = report.get("comparison") or {}
    ratio = comp.get("ratio")
    rows.append(
        {
            "target": f"E2E search req/s at c={comp.get('concurrency', RATIO_LEVEL)}, faceauth / reference",
            "measured": ratio,
            "unit": "x",
            "op": ">=",
            "limit": TARGET_RATIO,
            "detail": None
            if ratio is None
            else f"{comp['ours_req_per_s']:.1f} vs {comp['reference_req_per_s']:.1f} req/s",
        }
    )
    rows.append(
        {
            "target": f"E2E search p95 at c={comp.get('concurrency', RATIO_LEVEL)}, faceauth / reference",
            "measured": None if ratio is None else round(comp["ours_p95_ms"] / comp["reference_p95_ms"], 3),
            "unit": "x",
            "op": "<",
            "limit": 1.0,
            "detail": None if ratio is None else f"{comp['ours_p95_ms']:.0f} vs {comp['reference_p95_ms']:.0f} ms",
        }
    )
    memory = (report.get("designs") or {}).get(OURS, {}).get("memory") or {}
    rows.append(
        {
            "target": "ML service RSS under load (peak, process tree)",
            "measured": memory.get("ml_peak_mib"),
            "unit": "MiB",
            "op": "<=",
            "limit": ML_RSS_LIMIT_MIB,
            "detail": None,
        }
    )
    rows.append(
        {
            "target": "Face API RSS under load (peak, process tree incl. milvus-lite)",
            "measured": memory.get("api_peak_mib"),
            "unit": "MiB",
            "op": "<=",
            "limit": API_RSS_LIMIT_MIB,
            "detail": None
            if memory.get("api_main_peak_mib") is None
            else f"API process alone {memory['api_main_peak_mib']:.0f} MiB",
        }
    )
    cold = (report.get("cold_start") or {}).get(OURS) or {}
    rows.append(
        {
            "target": "ML service cold start to /readyz 200 (median)",
            "measured": cold.get("median_s"),
            "unit": "s",
            "op": "<=",
            "limit": COLD_START_LIMIT_S,
            "detail": None if not cold.get("seconds") else f"starts: {', '.join(f'{s:.2f}' for s in cold['seconds'])}",
        }
    )
    return rows


def met(value: float | None, op: str, limit: float) -> bool | None:
    """Is `value op limit`? None when there is no value."""
    if value is None:
        return None
    return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]


def levels_table(levels: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| design | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors | ML cores | Face API cores "
        "| other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cores(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for design, rows in levels.items():
        for r in rows:
            lines.append(
                f"| {design} | {r['concurrency']} | {r['throughput_per_s']:.1f} | {r['p50_ms']:.0f} | "
                f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']}/{r['requests']} | {cores(r.get('ml_cores'))} | "
                f"{cores(r.get('api_cores'))} | {cores(r['other_cores'])} |"
            )
    return "\n".join(lines)


def memory_table(designs: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| design | ML after start MiB | ML peak under load MiB | API after start MiB | API peak under load MiB | "
        "API process alone, peak MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in designs.items():
        m = d.get("memory") or {}
        cells = [m.get(k) for k in ("ml_after_start_mib", "ml_peak_mib", "api_after_start_mib", "api_peak_mib")]
        cells.append(m.get("api_main_peak_mib"))
        lines.append(f"| {name} | " + " | ".join("" if c is None else f"{c:.0f}" for c in cells) + " |")
    return "\n".join(lines)


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.0f} {unit}" if unit == "MiB" else f"{value:.2f} {unit}"


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        ok = met(row["measured"], row["op"], row["limit"])
        state = "not measured" if ok is None else "met" if ok else "NOT met"
        value = "n/a" if row["measured"] is None else _fmt(row["measured"], row["unit"])
        detail = f" ({row['detail']})" if row.get("detail") else ""
        out.append(f"- {row['target']}: {value}{detail}; target {row['op']} {_fmt(row['limit'], row['unit'])}: {state}")
    return out


def render(report: dict[str, Any]) -> str:
    levels = {name: d["levels"] for name, d in report["designs"].items()}
    lines = [levels_table(levels), ""]
    comp = report["comparison"]
    if comp.get("ratio") is not None:
        rounds = comp.get("ratio_per_round") or []
        per_round = f"; round by round: {', '.join('n/a' if r is None else f'{r:.2f}x' for r in rounds)}"
        lines.append(
            f"At concurrency {comp['concurrency']}: faceauth {comp['ours_req_per_s']:.1f} req/s vs reference "
            f"{comp['reference_req_per_s']:.1f} req/s = **{comp['ratio']:.2f}x** (target >= {TARGET_RATIO}x); p95 "
            f"{comp['ours_p95_ms']:.0f} vs {comp['reference_p95_ms']:.0f} ms "
            f"({'lower' if comp['p95_lower'] else 'NOT lower'})" + (per_round if len(rounds) > 1 else "")
        )
        unequal = disturbance_gap(comp)
        if unequal is not None:
            lines.append(
                f"Warning: other work on the machine took {comp['ours_other_cores']:.2f} cores while faceauth was "
                f"measured and {comp['reference_other_cores']:.2f} while the reference was: the two levels were not "
                "measured under the same conditions (run again on a quiet machine)."
            )
        lines.append("")
    lines += ["Memory (RSS of each service's process tree, sampled from /proc):", "", memory_table(report["designs"])]
    lines += ["", "Cold start of the ML service (process start -> /readyz 200):", ""]
    for name, c in report.get("cold_start", {}).items():
        lines.append(f"- {name}: median {c['median_s']:.2f} s of {', '.join(f'{s:.2f}' for s in c['seconds'])} s")
    for name, d in report["designs"].items():
        e, c = d["enrol"], d["check"]
        lines.append(
            f"- {name}: enrolled {e['enrolled']}/{e['photos']} photos"
            + (f" (refused: {', '.join(f'{k} {v}' for k, v in sorted(e['refused'].items()))})" if e["refused"] else "")
            + f"; {c['top1_self']}/{c['searches']} searches found the photo itself first"
            + (f"; quality-refused searches: {', '.join(c['quality_refused'])}" if c["quality_refused"] else "")
        )
    lines += ["", "Targets:", *verdict_lines(report["targets"])]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path:
    """req/s and p95 latency versus concurrency, one line per design."""
    import matplotlib  # a dev dependency: only --plot needs it

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (tput, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, d in report["designs"].items():
        rows = sorted(d["levels"], key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in rows]
        tput.plot(xs, [r["throughput_per_s"] for r in rows], marker="o", label=name)
        lat.plot(xs, [r["p95_ms"] for r in rows], marker="o", label=name)
    # A level measured while other work used the machine is ringed: its figure is not a clean one.
    quiet = report["settings"].get("quiet_cores", 0.3)
    disturbed = [
        (r["concurrency"], r[key])
        for d in report["designs"].values()
        for r in d["levels"]
        if (r.get("other_cores") or 0.0) > quiet
        for key in ("throughput_per_s", "p95_ms")
    ]
    for ax, key_index in ((tput, 0), (lat, 1)):
        points = disturbed[key_index::2]
        if points:
            ax.scatter(
                *zip(*points, strict=True),
                s=160,
                facecolors="none",
                edgecolors="red",
                zorder=3,
                label=f"other work > {quiet:g} cores",
            )
    levels = sorted({r["concurrency"] for d in report["designs"].values() for r in d["levels"]})
    by_level = {name: {r["concurrency"]: r for r in d["levels"]} for name, d in report["designs"].items()}
    if OURS in by_level and REFERENCE in by_level:  # the ratio at each level, next to our point
        for c, ours in by_level[OURS].items():
            ref = by_level[REFERENCE].get(c)
            if ref and ref["throughput_per_s"]:
                value = ours["throughput_per_s"] / ref["throughput_per_s"]
                tput.annotate(
                    f"{value:.1f}×",
                    (c, ours["throughput_per_s"]),
                    textcoords="offset points",
                    xytext=(0, 7),
                    ha="center",
                )
    for ax, ylabel, title in (
        (tput, "searches per second", "throughput"),
        (lat, "p95 latency (ms)", "p95 latency"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.set(xlabel="concurrent clients", ylabel=ylabel, title=title)
        ax.margins(y=0.12)  # room for the ratio labels above the top points
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    machine = report.get("machine", {})
    fig.suptitle(
        f"POST /v1/faces/search through both services, {report['settings']['gallery']} photos "
        f"({machine.get('cores', '?')} cores)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.splitlines()[0])
    levels = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    parser.add_argument("--concurrency", type=levels, default=[1, 2, 4, 8, 16], help="levels (default 1,2,4,8,16)")
    parser.add_argument("--requests", type=int, default=120, help="timed requests per level (default 120)")
    parser.add_argument("--warmup", type=int, default=16, help="warm-up requests per level (default 16)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the pairs this often; median round kept")
    parser.add_argument("--designs", default=",".join(DESIGNS), help="reference,faceauth (default both)")
    parser.add_argument("--cold-starts", type=int, default=3, help="ML service starts timed per design (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: c=1,8, 24 requests, one cold start")
    parser.add_argument("--shared-dir", type=Path, default=None, help="default: $FACEAUTH_SHARED_DIR")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s")
    parser.add_argument("--level-timeout", type=float, default=900.0, help="bound on one level's timed phase, s")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="wait for /readyz, s")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="other work tolerated before a level, cores")
    parser.add_argument("--quiet-timeout", type=float, default=30.0, help="longest wait for a quiet machine, s")
    parser.add_argument("--retries", type=int, default=1, help="measure a disturbed level again (default once)")
    parser.add_argument("--rss-interval", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures (JSON) here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the report (markdown) here")
    parser.add_argument("--plot", type=Path, default=None, help="draw req/s and p95 vs concurrency into this PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency = [1, 8] if args.concurrency == [1, 2, 4, 8, 16] else args.concurrency
        args.requests, args.warmup, args.cold_starts = min(args.requests, 24), min(args.warmup, 4), 1
    shared = args.shared_dir or os.environ.get("FACEAUTH_SHARED_DIR")
    if not shared:
        parser.error("set FACEAUTH_SHARED_DIR or pass --shared-dir")
    args.shared_dir = Path(shared).resolve()
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    if set(args.designs) - set(DESIGNS) or not args.designs:
        parser.error(f"--designs takes {', '.join(DESIGNS)}")
    if args.rounds < 1 or args.retries < 0 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--rounds >= 1, --retries >= 0 and concurrency levels >= 1")
    return args


def machine() -> dict[str, Any]:
    return {**machine_facts(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able report (also used by bench.all)."""
    started = dt.datetime.now(dt.UTC)
    photos = photo_paths(args.shared_dir)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-logs-") as tmp:
        if args.log_dir is None:
            args.log_dir = Path(tmp)
        args.log_dir.mkdir(parents=True, exist_ok=True)
        cold, gallery, refused = await cold_starts(args, photos)
        say(f"gallery: {len(gallery)} of {len(photos)} photos pass this project's quality checks")
        runs: dict[str, list[PairRun]] = {d: [] for d in args.designs}
        for i in range(args.rounds):
            order = args.designs if i % 2 == 0 else list(reversed(args.designs))  # alternate: drift hits both
            for design in order:  # one pair at a time: never two pairs alive while measuring
                runs[design].append(await bench_pair(design, args, gallery, i + 1))
        if args.log_dir == Path(tmp):
            args.log_dir = None
    designs: dict[str, dict[str, Any]] = {}
    for name, pair_runs in runs.items():
        merged = merge_rounds(pair_runs, args.concurrency)
        memories = [r.memory for r in pair_runs]

        def worst(key: str, memories: list[dict[str, Any]] = memories) -> float | None:
            values = [m[key] for m in memories if m.get(key) is not None]
            return max(values) if values else None

        designs[name] = {
            "levels": [level_row(r, pair_runs) for r in merged],
            "latencies_ms": {str(r.concurrency): [round(v, 2) for v in r.latencies_ms] for r in merged},
            "throughput_per_round": {
                str(level): [r.throughput for run in pair_runs for r in run.results if r.concurrency == level]
                for level in args.concurrency
            },
            "startup_s": [r.startup_s for r in pair_runs],
            "enrol": pair_runs[0].enrol,
            "check": pair_runs[0].check,
            # The highest peak over the rounds (the figure a memory limit has to hold).
            "memory": {
                **{k: worst(k) for k in ("ml_peak_mib", "api_peak_mib", "api_main_peak_mib")},
                **{k: worst(k) for k in ("ml_after_start_mib", "api_after_start_mib")},
                "per_round": memories,
            },
        }
    levels = {name: d["levels"] for name, d in designs.items()}
    level = RATIO_LEVEL if RATIO_LEVEL in args.concurrency else max(args.concurrency)
    comp = comparison(levels, level)
    per_round = []
    for i in range(args.rounds):
        one = {n: [level_row(r, runs[n]) for r in runs[n][i].results] for n in runs}
        per_round.append(comparison(one, level).get("ratio"))
    comp["ratio_per_round"] = per_round
    report: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": command_line(COMMAND, sys.argv[1:]),
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "requests": args.requests,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "photos": len(photos),
            "gallery": len(gallery),
            "quiet_cores": args.quiet_cores,
        },
        "gallery_refused": refused,
        "cold_start": cold,
        "designs": designs,
        "comparison": comp,
    }
    report["targets"] = verdicts(report)
    return report


def write_outputs(report: dict[str, Any], args: argparse.Namespace, text: str) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {args.json}")
    if args.markdown:
        m = report["machine"]
        head = [
            "## Face API end to end: this project against the reference design",
            "",
            f"Run on {report['started_utc']} at revision {m.get('revision')}; {m.get('cores')} cores ({m.get('cpu')}), "
            f"load average at the end {m.get('loadavg')}.",
            "",
            "```",
            report["command"],
            "```",
            "",
        ]
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(head) + text + "\n")
        say(f"wrote {args.markdown}")
    if args.plot:
        say(f"plot {plot(report, args.plot)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run_benchmark(args))
    text = render(report)
    print(text)
    write_outputs(report, args, text)
    failed = any(r["errors"] for d in report["designs"].values() for r in d["levels"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
