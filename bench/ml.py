"""Benchmark faceauth's ML service against the straightforward design, in one run on this machine.

For each service, one at a time (never two loaded at once, so they do not share the cores):

1. start it as a subprocess on a free loopback port and wait for ``GET /readyz``;
2. post every test photo once to ``/v1/embed`` and keep the largest face's embedding (also warms it up);
3. for each endpoint and concurrency (1, 4, 8): a warm-up batch, then a fixed number of timed requests from N
   concurrent clients, photos drawn round-robin from ``$FACEAUTH_SHARED_DIR/faces/deepface/*.jpg`` as
   pre-encoded ``{"image_b64": ...}`` JSON bodies;
4. stop it.

"The straightforward design" is ``bench.baseline_ml_service`` (insightface ``FaceAnalysis`` per
request in ``asyncio.to_thread``, same two ONNX files). Ours is ``uv run faceauth ml``. The run prints a
markdown table (images/s, p50/p95/p99 latency, errors), the ratio of our ``/v1/embed`` throughput at
concurrency 8 to the baseline's (target >= 1.5x) and how closely the two services' embeddings agree (cosine
of the largest face).

Run (needs the ``bench`` group for the baseline)::

    FACEAUTH_SHARED_DIR=../shared uv run --group bench python -m bench.ml --rounds 3 \\
        --markdown bench-results/ml.md --json bench-results/ml.json
    ... --quick          # a short smoke run
    ... --rounds 3       # alternate the services three times; each row is the median round

The machine is shared with whatever else runs on it: the benchmark waits for it to be quiet before each
level, measures every process's CPU time, and measures a level again when other work disturbed it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import importlib.util
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import (
    LoadResult,
    Payload,
    json_payload,
    multipart_payload,
    percentile,
    results_table,
    run_level,
    wait_for_quiet,
)
from bench.machine import command_line, machine_facts
from bench.photos import photo_paths
from bench.servers.process import HOST, ServiceProcess, free_port
from bench.servers.services import spoof_model_env

PROJECT_DIR = Path(__file__).resolve().parent.parent
BASELINE = "baseline"
OURS = "faceauth"
TARGET_RATIO = 1.5
COMMAND = "FACEAUTH_SHARED_DIR=../shared uv run --group bench python -m bench.ml"  # how reports say it was run


# --------------------------------------------------------------------------------------------- inputs


def json_bodies(photos: Sequence[Path]) -> list[Payload]:
    return [json_payload({"image_b64": base64.b64encode(p.read_bytes()).decode()}, p.name) for p in photos]


def multipart_bodies(photos: Sequence[Path]) -> list[Payload]:
    return [multipart_payload({"file": (p.name, p.read_bytes(), "image/jpeg")}, name=p.name) for p in photos]


# --------------------------------------------------------------------------------------------- services


@dataclass
class ServiceSpec:
    name: str
    argv: Callable[[int], list[str]]  # port -> command line
    endpoints: list[str]
    env: dict[str, str] = field(default_factory=dict)
    multipart: bool = False  # also measure multipart bodies


def baseline_spec() -> ServiceSpec:
    if importlib.util.find_spec("insightface") is None:
        raise SystemExit("the baseline needs insightface: run with `uv run --group bench python ...`")
    return ServiceSpec(
        name=BASELINE,
        argv=lambda port: [sys.executable, "-m", "bench.baseline_ml_service", "--host", HOST, "--port", str(port)],
        endpoints=["/v1/embed"],
    )


def ours_spec(command: str, shared_dir: Path, multipart: bool) -> ServiceSpec:
    base = shlex.split(command)
    return ServiceSpec(
        name=OURS,
        argv=lambda port: [*base, "--host", HOST, "--port", str(port)],
        endpoints=["/v1/embed", "/v1/analyze"],
        env=spoof_model_env(shared_dir),
        multipart=multipart,
    )


def default_ours_command() -> str:
    if shutil.which("uv"):
        return "uv run faceauth ml"
    return shlex.quote(str(Path(sys.executable).with_name("faceauth"))) + " ml"


# --------------------------------------------------------------------------------------------- embeddings


def find_embedding(answer: Any) -> list[float] | None:
    """The ``embedding`` list in an answer (top level, or the first nested one), None if no face."""
    if isinstance(answer, dict):
        value = answer.get("embedding")
        if isinstance(value, list) and value:
            return [float(v) for v in value]
        for child in answer.values():
            if isinstance(child, dict | list):
                found = find_embedding(child)
                if found is not None:
                    return found
    elif isinstance(answer, list):
        for child in answer:
            found = find_embedding(child)
            if found is not None:
                return found
    return None


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float("nan")


async def collect_embeddings(
    client: httpx.AsyncClient, url: str, payloads: Sequence[Payload]
) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """One request per photo, one at a time: photo -> embedding (None: no face) and photo -> error."""
    embeddings: dict[str, list[float] | None] = {}
    failures: dict[str, str] = {}
    for payload in payloads:
        try:
            response = await client.post(url, content=payload.content, headers=payload.headers)
        except httpx.HTTPError as exc:
            failures[payload.name] = type(exc).__name__
            continue
        if not response.is_success:
            failures[payload.name] = f"HTTP {response.status_code}: {response.text[:200]}"
            continue
        embeddings[payload.name] = find_embedding(response.json())
    return embeddings, failures


async def answer_keys(client: httpx.AsyncClient, url: str, payload: Payload) -> list[str]:
    """The top-level keys of one answer (for the report), or the error."""
    try:
        response = await client.post(url, content=payload.content, headers=payload.headers)
        answer = response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError) as exc:
        return [f"<{type(exc).__name__}>"]
    if answer is None:
        return [f"<HTTP {response.status_code}>"]
    return sorted(answer) if isinstance(answer, dict) else [f"<{type(answer).__name__}>"]


async def stage_timings(client: httpx.AsyncClient, url: str, payloads: Sequence[Payload]) -> dict[str, list[float]]:
    """Each photo once, one at a time: the service's own ``timings_ms`` per stage, collected per stage."""
    stages: dict[str, list[float]] = {}
    for payload in payloads:
        try:
            response = await client.post(url, content=payload.content, headers=payload.headers)
            timings = response.json().get("timings_ms") if response.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        for stage, ms in (timings or {}).items():
            if isinstance(ms, int | float):
                stages.setdefault(stage, []).append(float(ms))
    return stages


def stage_table(runs: dict[str, ServiceRun]) -> str:
    """Mean and p95 per stage of the server-reported timings (one request at a time)."""
    lines = [
        "| service | endpoint | stage | mean ms | p95 ms | photos |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, run in runs.items():
        for endpoint, stages in run.stage_ms.items():
            for stage, values in stages.items():
                lines.append(
                    f"| {name} | {endpoint} | {stage} | {sum(values) / len(values):.1f} | "
                    f"{percentile(values, 95):.1f} | {len(values)} |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def compare_embeddings(base: dict[str, list[float] | None], ours: dict[str, list[float] | None]) -> dict[str, Any]:
    common = sorted(set(base) & set(ours))
    both = [n for n in common if base[n] is not None and ours[n] is not None]
    detect_disagree = [n for n in common if (base[n] is None) != (ours[n] is None)]
    sims = {n: cosine(base[n], ours[n]) for n in both}  # type: ignore[arg-type]
    worst = sorted(sims.items(), key=lambda kv: kv[1])[:5]
    return {
        "photos_compared": len(both),
        "mean_cosine": sum(sims.values()) / len(sims) if sims else float("nan"),
        "min_cosine": min(sims.values()) if sims else float("nan"),
        "below_0_99": sorted(n for n, s in sims.items() if s < 0.99),
        "worst": [{"photo": n, "cosine": round(s, 5)} for n, s in worst],
        "face_found_by_one_only": {
            n: {"baseline": base[n] is not None, "faceauth": ours[n] is not None} for n in detect_disagree
        },
        "no_face_in_both": sorted(n for n in common if base[n] is None and ours[n] is None),
    }


# --------------------------------------------------------------------------------------------- the run


@dataclass
class ServiceRun:
    name: str
    command: list[str]
    startup_s: float | None = None
    results: list[LoadResult] = field(default_factory=list)
    embeddings: dict[str, list[float] | None] = field(default_factory=dict)
    embed_failures: dict[str, str] = field(default_factory=dict)
    # endpoint -> the top-level keys of one answer
    answer_keys: dict[str, list[str]] = field(default_factory=dict)
    # endpoint -> stage -> per-photo milliseconds, where answers carry a `timings_ms` object
    stage_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # (service label, endpoint, concurrency) -> img/s of each round, with --rounds > 1
    round_throughputs: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)


async def bench_service(
    spec: ServiceSpec,
    args: argparse.Namespace,
    json_payloads: Sequence[Payload],
    mp_payloads: Sequence[Payload],
    log_dir: Path,
    *,
    probe: bool = True,
    round_no: int = 1,
) -> ServiceRun:
    """Start the service, (if `probe`) collect its embeddings and stage timings, measure every level, stop it."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    argv = spec.argv(port)
    run = ServiceRun(spec.name, argv)
    env = {**os.environ, **spec.env}
    log_path = log_dir / (f"{spec.name}.log" if round_no == 1 else f"{spec.name}-round{round_no}.log")
    say(f"[{spec.name}] starting: {' '.join(argv)} (log: {log_path})")
    server = ServiceProcess(
        argv,
        base_url,
        name=spec.name,
        env=env,
        cwd=PROJECT_DIR,
        log_path=log_path,
        ready_timeout=args.ready_timeout,
    )
    top = max(args.concurrency)
    limits = httpx.Limits(max_connections=top, max_keepalive_connections=top)
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    with server:
        run.startup_s = server.startup_s
        say(f"[{spec.name}] ready after {server.startup_s:.1f} s")
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
            if probe:
                await probe_service(client, spec, run, json_payloads, args)
            endpoints = [ep for ep in spec.endpoints if not args.endpoints or ep in args.endpoints]
            variants: list[tuple[str, str, Sequence[Payload]]] = [(spec.name, ep, json_payloads) for ep in endpoints]
            if spec.multipart:
                variants += [(f"{spec.name} (multipart)", ep, mp_payloads) for ep in endpoints]
            for label, endpoint, payloads in variants:
                for level in args.concurrency:
                    result = await measure_level(client, server, label, endpoint, payloads, level, args)
                    run.results.append(result)
    say(f"[{spec.name}] stopped")
    return run


async def probe_service(
    client: httpx.AsyncClient,
    spec: ServiceSpec,
    run: ServiceRun,
    json_payloads: Sequence[Payload],
    args: argparse.Namespace,
) -> None:
    """Each photo once, one at a time: the embeddings to compare, the answers' shape, the stage timings."""
    subset = json_payloads[: args.compare_photos] if args.compare_photos else json_payloads
    run.embeddings, run.embed_failures = await collect_embeddings(client, "/v1/embed", subset)
    for endpoint in spec.endpoints:
        run.answer_keys[endpoint] = await answer_keys(client, endpoint, json_payloads[0])
        if "timings_ms" in run.answer_keys[endpoint]:
            run.stage_ms[endpoint] = await stage_timings(client, endpoint, subset)
    found = sum(v is not None for v in run.embeddings.values())
    say(f"[{spec.name}] embeddings: {found} faces in {len(subset)} photos, {len(run.embed_failures)} failures")


def merge_rounds(rounds: list[ServiceRun]) -> ServiceRun:
    """One run per service: for each level the round with the median throughput (a real measurement, with
    its own latencies); the first round's probes. ``round_throughputs`` keeps every round's figure."""
    merged = rounds[0]
    if len(rounds) == 1:
        return merged
    by_key: dict[tuple[str, str, int], list[LoadResult]] = {}
    for run in rounds:
        for r in run.results:
            by_key.setdefault((r.service, r.endpoint, r.concurrency), []).append(r)
    results = []
    for key, candidates in by_key.items():
        ordered = sorted(candidates, key=lambda r: r.throughput)
        results.append(ordered[(len(ordered) - 1) // 2])
        merged.round_throughputs[key] = [r.throughput for r in candidates]
    merged.results = results
    return merged


async def measure_level(
    client: httpx.AsyncClient,
    server: ServiceProcess,
    label: str,
    endpoint: str,
    payloads: Sequence[Payload],
    level: int,
    args: argparse.Namespace,
) -> LoadResult:
    """One level; measured again (up to `--retries` times) when other work on the machine disturbed it.

    Keeps the attempt that other work disturbed least.
    """
    best: LoadResult | None = None
    for attempt in range(1 + args.retries):
        quiet, busy = await wait_for_quiet(args.quiet_cores, timeout_s=args.quiet_timeout)
        if not quiet:
            say(f"[{label}] machine busy ({busy:.2f} cores elsewhere), measuring anyway")
        result = await run_level(
            client,
            endpoint,
            payloads,
            concurrency=level,
            requests=args.requests,
            warmup=args.warmup,
            service=label,
            endpoint=endpoint,
            server=server,
            max_seconds=args.level_timeout,
        )
        noisy = result.disturbed(args.quiet_cores)
        say(
            f"[{label}] {endpoint} c={level}: {result.throughput:.1f} img/s, "
            f"p50 {result.p50:.0f} ms, p95 {result.p95:.0f} ms, p99 {result.p99:.0f} ms, "
            f"errors {result.error_count}/{result.requests}"
            + (f" {result.errors}" if result.errors else "")
            + (f" [other work on the machine: {result.other_cores:.2f} cores]" if noisy else "")
        )
        if best is None or (result.other_cores or 0.0) < (best.other_cores or 0.0):
            best = result
        if not noisy:
            break
        if attempt < args.retries:
            say(f"[{label}] {endpoint} c={level}: disturbed, measuring again")
    assert best is not None
    return best


def embed_ratio(runs: dict[str, ServiceRun], concurrency: int) -> float | None:
    def pick(name: str) -> LoadResult | None:
        run = runs.get(name)
        if run is None:
            return None
        return next(
            (
                r
                for r in run.results
                if r.service == name and r.endpoint == "/v1/embed" and r.concurrency == concurrency
            ),
            None,
        )

    ours, base = pick(OURS), pick(BASELINE)
    if ours is None or base is None or base.throughput <= 0:
        return None
    return ours.throughput / base.throughput


# --------------------------------------------------------------------------------------------- report


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def render(
    runs: dict[str, ServiceRun],
    comparison: dict[str, Any] | None,
    ratio: float | None,
    ratio_level: int,
    round_ratios: list[float | None],
    args: argparse.Namespace,
    n_photos: int,
    facts: dict[str, Any],
    started: dt.datetime,
) -> tuple[str, str]:
    """(the short stdout text, the full markdown report)."""
    results = [r for run in runs.values() for r in run.results]
    table = results_table(results)
    if ratio is None:
        ratio_line = f"Ratio of faceauth /v1/embed to baseline at concurrency {ratio_level}: n/a (both not measured)"
    else:
        verdict = "meets" if ratio >= TARGET_RATIO else "does NOT meet"
        ratio_line = (
            f"Ratio of faceauth /v1/embed to baseline at concurrency {ratio_level}: **{ratio:.2f}x** "
            f"({verdict} the {TARGET_RATIO}x target)"
        )
        if len(round_ratios) > 1:
            per_round = ", ".join("n/a" if r is None else f"{r:.2f}x" for r in round_ratios)
            ratio_line += f"; round by round: {per_round}"
    if comparison is None:
        agree_line = "Embedding agreement: n/a (needs both services)"
    else:
        agree_line = (
            "Embedding agreement (cosine of the largest face, same photo, "
            f"{comparison['photos_compared']} photos): "
            f"mean {fmt(comparison['mean_cosine'])}, min {fmt(comparison['min_cosine'])}"
        )
        if comparison["below_0_99"]:
            agree_line += f"; below 0.99: {', '.join(comparison['below_0_99'])}"
        if comparison["face_found_by_one_only"]:
            agree_line += f"; a face found by one service only: {', '.join(comparison['face_found_by_one_only'])}"
    failures = [
        f"{name}: {len(run.embed_failures)} photos failed on /v1/embed, e.g. {next(iter(run.embed_failures.items()))}"
        for name, run in runs.items()
        if run.embed_failures
    ]
    noisy = [
        f"{r.service} {r.endpoint} c={r.concurrency}: {r.other_cores:.2f}"
        for r in results
        if r.disturbed(args.quiet_cores)
    ]
    if noisy:
        failures.append(f"Warning: other work on the machine during some levels (cores): {'; '.join(noisy)}")
    stdout = "\n".join([table, "", ratio_line, agree_line, *failures])

    startup = ", ".join(f"{name} {run.startup_s:.1f} s" for name, run in runs.items() if run.startup_s is not None)
    md = [
        "## ML service: faceauth vs the straightforward design",
        "",
        f"Run on {started:%Y-%m-%d %H:%M} UTC at revision {facts['revision']}; "
        f"{facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, "
        f"{facts['os']}, Python {facts['python']}, onnxruntime {facts['onnxruntime']}, "
        f"insightface {facts['insightface']} (baseline), opencv {facts['opencv']}, no GPU.",
        "",
        "```",
        command_line(COMMAND, sys.argv[1:]),
        "```",
        "",
        f"{n_photos} photos round-robin, base64 JSON bodies encoded before timing; per level "
        f"{args.warmup} warm-up requests then {args.requests} timed requests from N concurrent clients "
        "on one HTTP/1.1 keep-alive connection pool; one service running at a time. "
        "img/s counts 2xx answers per second of wall time; "
        "latency is send-to-last-byte for 2xx answers; errors are non-2xx answers or transport failures / "
        "requests sent; server cores = CPU seconds of the service's process tree / wall seconds. "
        f"A level during which other work on the machine used more than {args.quiet_cores} cores is "
        f"measured again (at most {args.retries} times) and the least disturbed attempt is kept."
        + (
            f" Every service was measured in {args.rounds} rounds, alternating with the other (a fresh start "
            "each round); each row is the round with the median img/s."
            if args.rounds > 1
            else ""
        ),
        "",
        table,
        "",
        ratio_line,
        "",
        agree_line,
        "",
        f"Start-up to ready: {startup}.",
    ]
    stages = stage_table(runs)
    if stages:
        md += [
            "",
            "Where the time goes inside the service (its own `timings_ms`, each photo once, one request at a time):",
            "",
            stages,
        ]
        stdout += "\n\n" + stages
    if failures:
        md += ["", *failures]
    return stdout, "\n".join(md) + "\n"


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ml", description="Benchmark faceauth's ML service against the straightforward design."
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="timed requests per level (default: 3 passes over the photos)",
    )
    parser.add_argument("--warmup", type=int, default=16, help="warm-up requests per level (default 16)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 4, 8],
        help="comma-separated levels (default 1,4,8)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run: 24 requests, 4 warm-up, 12 photos compared")
    parser.add_argument("--services", default=f"{BASELINE},{OURS}", help=f"which to run (default {BASELINE},{OURS})")
    parser.add_argument(
        "--endpoints",
        type=lambda s: [e.strip() for e in s.split(",") if e.strip()],
        default=None,
        help="measure only these endpoints (default: /v1/embed, and /v1/analyze for ours)",
    )
    parser.add_argument(
        "--faceauth-cmd", default=None, help="command that starts our service (default: uv run faceauth ml)"
    )
    parser.add_argument("--multipart", action="store_true", help="also measure our service with multipart bodies")
    parser.add_argument("--shared-dir", type=Path, default=None, help="default: $FACEAUTH_SHARED_DIR")
    parser.add_argument("--compare-photos", type=int, default=0, help="photos for the embedding check (default all)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s")
    parser.add_argument("--level-timeout", type=float, default=900.0, help="bound on one level's timed phase, s")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="wait for /readyz, s")
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each level wait until other work uses at most this many cores (default 0.3)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="measure a disturbed level again, at most this often (default 2)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure all services this many times, alternating; each level reports its median round",
    )
    parser.add_argument("--quiet-timeout", type=float, default=120.0, help="longest wait for that, s")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the report (markdown) here")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures (JSON) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = args.requests or 24
        args.warmup = min(args.warmup, 4)
        args.compare_photos = args.compare_photos or 12
    shared = args.shared_dir or os.environ.get("FACEAUTH_SHARED_DIR")
    if not shared:
        parser.error("set FACEAUTH_SHARED_DIR or pass --shared-dir")
    args.shared_dir = Path(shared).resolve()
    args.services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = set(args.services) - {BASELINE, OURS}
    if unknown:
        parser.error(f"unknown services: {sorted(unknown)}")
    if args.rounds < 1 or args.retries < 0:
        parser.error("--rounds must be >= 1 and --retries >= 0")
    if min(args.concurrency) < 1:
        parser.error("concurrency levels must be >= 1")
    return args


async def amain(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    photos = photo_paths(args.shared_dir)
    if args.requests is None:
        args.requests = 3 * len(photos)
    json_payloads = json_bodies(photos)
    mp_payloads = multipart_bodies(photos) if args.multipart else []
    specs = []
    if BASELINE in args.services:
        specs.append(baseline_spec())
    if OURS in args.services:
        specs.append(ours_spec(args.faceauth_cmd or default_ours_command(), args.shared_dir, args.multipart))

    ratio_level = 8 if 8 in args.concurrency else max(args.concurrency)
    with tempfile.TemporaryDirectory(prefix="bench-ml-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        rounds: dict[str, list[ServiceRun]] = {spec.name: [] for spec in specs}
        for i in range(args.rounds):  # alternating services, so slow drift of the machine hits both alike
            if args.rounds > 1:
                say(f"round {i + 1}/{args.rounds}")
            for spec in specs:  # one at a time: never two services loaded while measuring
                run = await bench_service(spec, args, json_payloads, mp_payloads, log_dir, probe=i == 0, round_no=i + 1)
                rounds[spec.name].append(run)
        round_ratios = [embed_ratio({n: r[i] for n, r in rounds.items()}, ratio_level) for i in range(args.rounds)]
        runs = {name: merge_rounds(service_rounds) for name, service_rounds in rounds.items()}

    comparison = None
    if BASELINE in runs and OURS in runs:
        comparison = compare_embeddings(runs[BASELINE].embeddings, runs[OURS].embeddings)
    ratio = embed_ratio(runs, ratio_level)
    facts = machine_facts()
    stdout, report = render(runs, comparison, ratio, ratio_level, round_ratios, args, len(photos), facts, started)
    print(stdout)

    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
        say(f"wrote {args.markdown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "started_utc": started.isoformat(timespec="seconds"),
            "command": command_line(COMMAND, sys.argv[1:]),
            "machine": facts,
            "settings": {
                "requests": args.requests,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "photos": len(photos),
                "timeout_s": args.timeout,
            },
            "services": {
                name: {
                    "command": " ".join(Path(a).name if Path(a).is_absolute() else a for a in run.command),
                    "startup_s": run.startup_s,
                    "embed_failures": run.embed_failures,
                    "answer_keys": run.answer_keys,
                    "stage_ms": run.stage_ms,
                    "throughput_per_round": [
                        {"service": k[0], "endpoint": k[1], "concurrency": k[2], "img_per_s": v}
                        for k, v in run.round_throughputs.items()
                    ],
                    "results": [r.to_dict() for r in run.results],
                }
                for name, run in runs.items()
            },
            "embed_ratio": {
                "concurrency": ratio_level,
                "ratio": ratio,
                "ratio_per_round": round_ratios,
                "target": TARGET_RATIO,
            },
            "embedding_agreement": comparison,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
        say(f"wrote {args.json}")
    failed = any(r.error_count for run in runs.values() for r in run.results)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
