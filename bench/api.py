"""Benchmark the Face API end to end (both real services over HTTP) and 1:N search in Milvus.

Part 1, through both services: ``faceauth ml`` and ``faceauth api`` start as subprocesses on free loopback ports
(the API on its embedded defaults in a temporary data folder, or on ``--milvus-uri``). The photos the ML service
accepts are enrolled with ``POST /v1/faces/insert`` (every request a new id), then searched with
``POST /v1/faces/search`` in a tenant that holds them, at each concurrency (1, 4, 8 by default). It prints
throughput and p50/p95/p99 latency per level.

Part 2, 1:N search latency in one tenant of N synthetic 512-d vectors, through ``MilvusFaceIndex`` (the code the
API runs): by default 100k on milvus-lite, 100k and 1M on a real Milvus 2.3.5 server (``bench.milvus``
does the work; ``--milvus`` chooses the cases, ``--skip-milvus`` leaves this part out).

Run::

    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.api --json bench-results/api.json
    ... --quick                                   # a short smoke run of part 1 only
    ... --milvus lite:100000,milvus235:100000     # choose the Milvus cases
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.loadgen import LoadResult, Payload, multipart_payload, results_table, run_level, wait_for_quiet
from bench.photos import accepted_by_ml, photo_paths
from bench.servers.services import TOKEN, FaceauthService, api_env, ml_env, spoof_model_env


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def usable_photos(ml_url: str, shared_dir: Path) -> list[tuple[str, bytes]]:
    """The photos the ML service accepts for enrolment (one face, every check passed): (name, bytes) each."""
    accepted, _ = accepted_by_ml(ml_url, TOKEN, photo_paths(shared_dir))
    if not accepted:
        raise SystemExit("no usable photos (set FACEAUTH_SHARED_DIR)")
    return [(path.name, path.read_bytes()) for path in accepted]


def insert_payloads(photos: Sequence[tuple[str, bytes]], tenant: str, count: int) -> list[Payload]:
    # Every insert needs an id of its own, so the bodies are built per request (before timing starts).
    return [
        multipart_payload(
            {"file": (photos[i % len(photos)][0], photos[i % len(photos)][1], "image/jpeg")},
            {"id": f"face_{i:06d}", "tenant": tenant},
            name=photos[i % len(photos)][0],
        )
        for i in range(count)
    ]


def search_payloads(photos: Sequence[tuple[str, bytes]], tenant: str) -> list[Payload]:
    return [
        multipart_payload({"file": (name, data, "image/jpeg")}, {"tenant": tenant}, name=name) for name, data in photos
    ]


async def bench_services(args: argparse.Namespace, log_dir: Path, data_dir: Path) -> list[LoadResult]:
    ml = FaceauthService("ml", ml_env(spoof_model_env(args.shared_dir)), log_path=log_dir / "ml.log")
    settings = {
        "FACEAUTH_MILVUS_URI": args.milvus_uri or "",
        # Loopback benchmark: no API keys (the load generator sends none).
        "FACEAUTH_AUTH_DISABLED": "true",
    }
    api = FaceauthService("api", api_env(ml.url, data_dir, settings), log_path=log_dir / "api.log")
    api_url = api.url
    results: list[LoadResult] = []
    with ml, api:
        say(f"services ready (ML {ml.startup_s:.1f} s, API {api.startup_s:.1f} s)")
        photos = usable_photos(ml.url, args.shared_dir)
        say(f"{len(photos)} usable photos")
        limits = httpx.Limits(max_connections=max(args.concurrency) * 2)
        async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:

            async def measure(endpoint: str, payloads: Sequence[Payload], level: int) -> None:
                await wait_for_quiet(timeout_s=30)
                result = await run_level(
                    client,
                    f"{api_url}/v1/faces/{endpoint}",
                    payloads,
                    concurrency=level,
                    requests=args.requests,
                    warmup=args.warmup,
                    service="faceauth",
                    endpoint=endpoint,
                    server=api,
                )
                results.append(result)
                errors = result.error_count
                say(f"{endpoint} c={level}: {result.throughput:.1f}/s, p95 {result.p95:.0f} ms, errors {errors}")

            for level in args.concurrency:
                await measure("insert", insert_payloads(photos, f"bench_c{level}", args.warmup + args.requests), level)
            searches = search_payloads(photos, f"bench_c{args.concurrency[0]}")
            for level in args.concurrency:
                await measure("search", searches, level)
    return results


def run_milvus_cases(cases: Sequence[str], log_dir: Path) -> list[dict]:
    """Each case `backend:size` runs bench.milvus in its own process (servers start and stop there)."""
    figures = []
    for case in cases:
        backend, size = case.split(":")
        out = log_dir / f"milvus-{backend}-{size}"
        cmd = [sys.executable, "-m", "bench.milvus"]
        cmd += ["--backend", backend, "--sizes", size, "--out", str(out)]
        say(f"milvus {backend} {size} ...")
        subprocess.run(cmd, check=True)
        for report in sorted(out.glob("*.json")):
            for run in json.loads(report.read_text())["runs"]:
                figures.append({"backend": backend, **run})
    return figures


def milvus_table(figures: Sequence[dict]) -> str:
    lines = [
        "| backend | index | vectors | ef | p50 ms | p95 ms | p99 ms | QPS (c=1) | recall@1 | index build s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        s = f["search"]
        lines.append(
            f"| {f['backend']} | {f['index']} | {f['size']:,} | {f.get('search_ef') or '-'} | {s['p50_ms']:.2f} | "
            f"{s['p95_ms']:.2f} | {s['p99_ms']:.2f} | {s['qps']:.0f} | {f['recall_at_1_probes']:.3f} | "
            f"{f['index_s']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description="Face API and Milvus search benchmark.")
    parser.add_argument("--requests", type=int, default=120, help="timed requests per level (default 120)")
    parser.add_argument("--warmup", type=int, default=12, help="warm-up requests per level (default 12)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s")
    parser.add_argument("--milvus-uri", default=None, help="run the API on this Milvus server (default: milvus-lite)")
    parser.add_argument(
        "--milvus",
        default="lite:100000,milvus235:100000,milvus235:1000000",
        help="Milvus cases backend:size, comma-separated",
    )
    parser.add_argument("--skip-milvus", action="store_true", help="leave out the Milvus search part")
    parser.add_argument("--skip-services", action="store_true", help="leave out the end-to-end part")
    parser.add_argument("--quick", action="store_true", help="24 requests per level, no Milvus part")
    parser.add_argument("--shared-dir", type=Path, default=None, help="default: $FACEAUTH_SHARED_DIR")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures (JSON) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.skip_milvus = 24, 4, True
    shared = args.shared_dir or os.environ.get("FACEAUTH_SHARED_DIR")
    if not shared and not args.skip_services:
        parser.error("set FACEAUTH_SHARED_DIR or pass --shared-dir")
    args.shared_dir = Path(shared).resolve() if shared else None
    return args


async def amain(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    report: dict = {"started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:]}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        if not args.skip_services:
            results = await bench_services(args, log_dir, Path(tmp) / "data")
            print(results_table(results, unit="req/s"))
            report["services"] = [r.summary() for r in results]
        if not args.skip_milvus:
            figures = run_milvus_cases([c for c in args.milvus.split(",") if c], log_dir)
            print()
            print(milvus_table(figures))
            report["milvus"] = figures
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain(parse_args())))
