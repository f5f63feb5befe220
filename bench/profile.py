"""Where the time goes: py-spy samples both services during end-to-end search at concurrency 8.

Starts ``faceauth ml`` and ``faceauth api`` (embedded stores in a temporary folder, API keys off), enrols the
photos the ML service accepts, then sends searches at the given concurrency while ``py-spy`` samples each
process (every thread, idle threads left out). Prints, per service, the share of samples and the CPU
milliseconds per request of each kind of work, and writes the raw samples and flame graphs (SVG).

Run::

    FACEAUTH_SHARED_DIR=../shared uv run --group bench python -m bench.profile \\
        --seconds 30 --out bench-results/profile
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench import api as bench_api
from bench.loadgen import run_level, wait_for_quiet
from bench.servers.services import FaceauthService, api_env, ml_env

RATE = 200  # samples per second and thread

# Kinds of work, tried in order against each sample's stack (outermost frame first); the first that matches
# any frame names the sample. Patterns match py-spy frame names ("function (file:line)").
ML_KINDS: list[tuple[str, str]] = [
    ("NSFW model (NudeNet 320n)", r"^NudeNetNsfw\.probabilities"),
    ("embedder model (ArcFace)", r"^ArcFaceEmbedder\.embed_aligned"),
    ("detector model (SCRFD)", r"^ScrfdDetector\.detect_batch"),
    ("anti-spoof model (MiniFASNet)", r"^MiniFASNetSpoof\.spoof_probability"),
    ("JPEG decode", r"^decode_image"),
    ("blur features", r"^BlurCheck\.(model_input|run)"),
    ("resizes for model inputs", r"^(working_copy|fit_long_side|ScrfdDetector\.model_input|letterbox|context_crop)"),
    ("face alignment", r"^(align_face|crop_to_aligned)"),
    ("micro-batching and staging", r"^(MicroBatcher|InferenceService\._staged|Pipeline\.(finish|start))"),
    ("HTTP, JSON, event loop", r"^(Server\.run|Runner\.run|RequestResponseCycle|_run_once)"),
]
API_KINDS: list[tuple[str, str]] = [
    # milvus-lite runs inside the API process: its client, its gRPC server threads and its engine.
    ("Milvus search (milvus-lite in process)", r"^(MilvusServicer|MilvusFaceIndex|MilvusClient|GrpcHandler)|\(grpc/"),
    ("call to the ML service", r"^MLClient\.|^AsyncClient\."),
    ("multipart parsing", r"^(MultiPartParser|Request\.form|Request\._get_form)"),
    ("HTTP, JSON, event loop", r"^(Server\.run|Runner\.run|RequestResponseCycle|_run_once)"),
]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def categorize(raw: Path, kinds: Sequence[tuple[str, str]]) -> tuple[int, collections.Counter[str]]:
    """Total samples and samples per kind of work in a py-spy ``--format raw`` file."""
    compiled = [(name, re.compile(pattern)) for name, pattern in kinds]
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")
        kind = next((name for name, rx in compiled if any(rx.search(f) for f in frames)), "other")
        counts[kind] += int(n)
    return total, counts


def table(total: int, counts: collections.Counter[str], requests: int, seconds: float) -> str:
    rows = ["| work | share of samples | CPU ms per request |", "|---|---:|---:|"]
    for kind, n in counts.most_common():
        cpu_ms = n / RATE * 1000 / max(requests, 1)
        rows.append(f"| {kind} | {n / total:.1%} | {cpu_ms:.1f} |")
    cores = total / RATE / seconds
    rows.append(
        f"| **all** ({cores:.2f} cores busy on average) | 100% | {total / RATE * 1000 / max(requests, 1):.1f} |"
    )
    return "\n".join(rows)


def spy(pid: int, seconds: float, out: Path, fmt: str) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(RATE), "--threads"]
    argv += ["--nonblocking", "--format", fmt, "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="faceauth-profile-"))
    ml = FaceauthService("ml", ml_env())
    settings = {"FACEAUTH_AUTH_DISABLED": "true", "FACEAUTH_STARTUP_SWEEP": "false"}
    api = FaceauthService("api", api_env(ml.url, data_dir, settings))
    api_url = api.url
    try:
        with ml, api:
            photos = bench_api.usable_photos(ml.url, args.shared_dir)
            tenant = "profile"
            limits = httpx.Limits(max_connections=2 * args.concurrency)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                enrol = bench_api.insert_payloads(photos, tenant, len(photos))
                await run_level(client, f"{api_url}/v1/faces/insert", enrol, concurrency=4, requests=len(enrol))
                await wait_for_quiet(timeout_s=30)
                spies = []
                for name, proc in (("ml", ml), ("api", api)):
                    assert proc.pid is not None
                    spies.append((name, spy(proc.pid, args.seconds, args.out / f"{name}.raw", "raw")))
                result = await run_level(
                    client,
                    f"{api_url}/v1/faces/search",
                    bench_api.search_payloads(photos, tenant),
                    concurrency=args.concurrency,
                    requests=100_000,
                    warmup=8,
                    max_seconds=args.seconds,
                )
                for name, proc in spies:
                    _, err = proc.communicate(timeout=60)
                    if proc.returncode:
                        say(f"py-spy on {name} failed: {err.decode(errors='replace')[-400:]}")
                        return 1
                # Flame graphs of a second, shorter window (py-spy writes one format per run).
                graphs = [
                    spy(p.pid, min(args.seconds, 10), args.out / f"{n}.svg", "flamegraph")
                    for n, p in (("ml", ml), ("api", api))
                ]  # type: ignore[arg-type]
                await run_level(
                    client,
                    f"{api_url}/v1/faces/search",
                    bench_api.search_payloads(photos, tenant),
                    concurrency=args.concurrency,
                    requests=100_000,
                    max_seconds=min(args.seconds, 10),
                )
                for proc in graphs:
                    proc.communicate(timeout=60)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    done = len(result.latencies_ms)
    print(
        f"search at concurrency {args.concurrency}: {result.throughput:.1f} req/s, p95 {result.p95:.0f} ms, "
        f"{done} requests in {args.seconds:.0f} s\n"
    )
    for name, kinds in (("ML service", ML_KINDS), ("Face API", API_KINDS)):
        total, counts = categorize(args.out / f"{'ml' if name == 'ML service' else 'api'}.raw", kinds)
        print(f"### {name}\n\n{table(total, counts, done, args.seconds)}\n")
    print(f"raw samples and flame graphs: {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shared = os.environ.get("FACEAUTH_SHARED_DIR")
    parser.add_argument("--shared-dir", type=Path, default=Path(shared) if shared else None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-results/profile"))
    args = parser.parse_args(argv)
    if args.shared_dir is None:
        parser.error("set FACEAUTH_SHARED_DIR or --shared-dir (the folder with faces/)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
