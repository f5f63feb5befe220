"""Benchmark the Face API's vector index (MilvusFaceIndex, the real code path) on synthetic faces.

For each size N: load N random unit 512-d vectors into one tenant (one face per vector), seal and index them,
then run single-query searches (top-k 5, threshold 0) one at a time and report latency percentiles and QPS,
plus recall against exact brute-force search (numpy) on the same vectors:

- recall@1 (probes): queries are noisy copies of stored vectors (cosine ~0.6 to the original, like a new photo
  of an enrolled person); the exact nearest neighbour is the original.
- recall@1 (random): queries are random unit vectors, the hard case for an approximate index (all neighbours
  are nearly orthogonal); shown for reference only.

`--consistency Session,Strong` repeats the search loop at each consistency level and also times reads that
directly follow a write (read-your-writes), which is what the level costs on a server.

Examples:
    uv run --frozen python -m bench.milvus --backend lite --sizes 100000
    uv run --frozen python -m bench.milvus --backend milvus235 --sizes 100000,1000000 --index HNSW
    uv run --frozen python -m bench.milvus --backend milvus235 --sizes 5000 --queries 300 \\
        --consistency Session,Strong
    uv run --frozen python -m bench.milvus --backend uri=http://127.0.0.1:19530 --sizes 10000
    uv run --frozen python -m bench.milvus --backend milvus235 --sizes 10000,100000,1000000 --index SCANN \\
        --nlist 1024 --nprobe 128,256 --plot docs/img/milvus_curve.png
    uv run --frozen python -m bench.milvus --plot out.png --plot-from bench-results/a.json bench-results/b.json

From another module (as bench.all does): `run_curve([10_000, 100_000, 1_000_000], backend="milvus235")` returns the
report (its "curve": p50/p95/p99, QPS, recall@1, build seconds, segments, server RSS and parameters per size and
setting).

Servers (lite-server, milvus235) are started on 127.0.0.1 in a temporary folder and stopped at the end.
Results: a table on stdout and JSON in bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import status_kib
from bench.servers.milvus import MilvusLiteServer, MilvusStandaloneServer
from faceauth.api.container import open_face_index
from faceauth.config import APISettings, load_api_settings
from faceauth.storage.milvus.index import MilvusFaceIndex
from faceauth.storage.records import FaceRecord

ROOT = Path(__file__).resolve().parent.parent

DIM = 512
TENANT = "bench"
MODEL = "bench-model"
PROBE_COSINE = 0.6


@dataclass
class Latency:
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    qps: float
    # The 10 slowest calls and when they started (s into the loop): periodic stalls show as regular gaps.
    slowest_ms: list[float] = field(default_factory=list)
    slowest_at_s: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, seconds: list[float], wall: float, starts: list[float] | None = None) -> Latency:
        ms = np.asarray(seconds) * 1000.0
        slow = np.argsort(-ms)[:10]
        slow = slow[np.argsort(np.asarray(starts)[slow])] if starts else slow
        return cls(
            n=len(ms),
            p50_ms=round(float(np.percentile(ms, 50)), 2),
            p95_ms=round(float(np.percentile(ms, 95)), 2),
            p99_ms=round(float(np.percentile(ms, 99)), 2),
            mean_ms=round(float(ms.mean()), 2),
            qps=round(len(ms) / wall, 1),
            slowest_ms=[round(float(ms[i]), 1) for i in slow],
            slowest_at_s=[round(starts[i], 2) for i in slow] if starts else [],
        )


@dataclass
class Run:
    size: int
    index: str
    consistency: str
    search_ef: int
    nprobe: int | None = None
    reorder_k: int | None = None
    index_params: dict[str, Any] = field(default_factory=dict)
    sealed_segments: int | None = None
    segment_rows: list[int] = field(default_factory=list)
    insert_s: float = 0.0
    insert_rows_per_s: float = 0.0
    index_s: float = 0.0
    search: Latency | None = None
    recall_at_1_probes: float = 0.0
    recall_at_5_probes: float = 0.0
    recall_at_1_random: float = 0.0
    read_after_write: Latency | None = None
    server_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)


# -- data -------------------------------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def stored_vectors(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((size, DIM), dtype=np.float32)
    for start in range(0, size, 100_000):  # bounded temporaries at 1M rows
        n = min(100_000, size - start)
        out[start : start + n] = unit_rows(rng, n)
    return out


def probes(stored: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(queries, index of the stored vector each one is a noisy copy of); cosine to it is PROBE_COSINE."""
    picks = rng.choice(len(stored), size=n, replace=False)
    base = stored[picks]
    noise = unit_rows(rng, n)
    noise -= np.sum(noise * base, axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = PROBE_COSINE * base + np.sqrt(1 - PROBE_COSINE**2) * noise
    return queries.astype(np.float32), picks


def exact_top(stored: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most similar stored vectors per query, best first (brute force)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(stored), 100_000):
        scores = queries @ stored[start : start + 100_000].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        cand_scores = np.take_along_axis(scores, top, axis=1)
        all_scores = np.concatenate([best_scores, cand_scores], axis=1)
        all_ids = np.concatenate([best_ids, top + start], axis=1)
        order = np.argsort(-all_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_ids = np.take_along_axis(all_ids, order, axis=1)
    return best_ids


def face_id(i: int) -> str:
    return f"f{i:07d}"


# -- servers ----------------------------------------------------------------------------------------------------


class Backend:
    def __init__(self, spec: str, work: Path, settings: dict[str, object] | None = None) -> None:
        self.spec = spec
        self.work = work
        self.server: MilvusLiteServer | MilvusStandaloneServer | None = None
        if spec == "lite":
            self.uri = str(work / "milvus.db")
        elif spec == "lite-server":
            self.server = MilvusLiteServer(work / "lite-server")
        elif spec == "milvus235":
            self.server = MilvusStandaloneServer(work / "milvus-2.3.5", settings=settings)
        elif spec.startswith("uri="):
            self.uri = spec[4:]
        else:
            raise SystemExit(f"unknown backend {spec!r}")
        if settings and spec != "milvus235":
            raise SystemExit("--server-setting only applies to --backend milvus235")

    def start(self) -> None:
        if self.server is not None:
            started = time.monotonic()
            self.server.start()
            self.uri = self.server.uri
            print(f"{self.server.name} on {self.uri} ({time.monotonic() - started:.1f} s to start)", flush=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=10.0)

    def rss_mb(self) -> float | None:
        """Resident memory of the server process (of this process for embedded milvus-lite, vectors included)."""
        pid = self.server.pid if self.server is not None else None
        if pid is None and self.spec != "lite":
            return None
        kb = status_kib(pid or "self")
        return round(kb / 1024, 1) if kb else None


def raw_client(uri: str) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, timeout=600, dedicated=True)


def seal_and_index(uri: str, collection: str, lite: bool, size: int, timeout: float, compact: bool = False) -> None:
    """Flush, wait for the vector index to cover every row, and reload so searches run on indexed segments.

    (A benchmark step: the Face API never flushes; Milvus seals and indexes segments on its own over time.)
    `compact` merges the sealed segments first, as Milvus's automatic compaction does some time after a load.
    """
    client = raw_client(uri)
    try:
        client.flush(collection, timeout=timeout)
        deadline = time.monotonic() + timeout
        if compact and not lite:
            job = client.compact(collection, timeout=60)
            while (state := str(client.get_compaction_state(job, timeout=60))) != "Completed":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"compaction not done after {timeout:.0f} s ({state})")
                time.sleep(2)
        if not lite:  # milvus-lite builds its indexes synchronously inside load()
            last = -1
            while True:
                info = client.describe_index(collection, "embedding", timeout=60) or {}
                done, total = int(info.get("indexed_rows", 0)), int(info.get("total_rows", 0))
                pending = int(info.get("pending_index_rows", 0))
                if reason := info.get("index_state_fail_reason") or info.get("fail_reason"):
                    raise RuntimeError(f"index build failed: {reason}")  # Milvus would retry it forever
                if total >= size and done >= total and pending == 0:
                    break
                if done != last:
                    print(f"    index build: {done}/{total} rows indexed", flush=True)
                    last = done
                if time.monotonic() > deadline:
                    raise TimeoutError(f"index not built after {timeout:.0f} s ({done}/{total})")
                time.sleep(5)
        client.release_collection(collection, timeout=timeout)
        client.load_collection(collection, timeout=timeout)
    finally:
        client.close()


def loaded_segments(uri: str, collection: str) -> list[int]:
    """Rows of each loaded segment (each one is searched separately, so their count drives latency)."""
    client = raw_client(uri)
    try:
        return sorted((int(s.num_rows) for s in client.list_loaded_segments(collection, timeout=60)), reverse=True)
    except Exception:  # milvus-lite has no segment listing
        return []
    finally:
        client.close()


# -- the benchmark ----------------------------------------------------------------------------------------------

IVF_KINDS = ("IVF_FLAT", "IVF_SQ8", "SCANN")


def search_grid(args: argparse.Namespace) -> list[dict[str, int]]:
    """The search parameter combinations to time on one loaded collection."""
    if args.index == "HNSW":
        return [{"ef": int(e)} for e in split(args.ef)]
    if args.index in IVF_KINDS:
        reorder = [int(r) for r in split(args.reorder_k)] if args.index == "SCANN" else [0]
        return [{"nprobe": int(n), "reorder_k": r} for n in split(args.nprobe) for r in reorder]
    return [{}]


def make_index(
    uri: str, collection: str, args: argparse.Namespace, consistency: str, data_dir: Path, search: dict[str, int]
) -> MilvusFaceIndex:
    settings = load_api_settings(
        milvus_uri=uri,
        milvus_collection=collection,
        milvus_index_type=args.index,
        milvus_consistency_level=consistency,
        milvus_hnsw_m=args.hnsw_m,
        milvus_hnsw_ef_construction=args.ef_construction,
        milvus_search_ef=search.get("ef", APISettings.model_fields["milvus_search_ef"].default),
        milvus_ivf_nlist=args.nlist,
        milvus_ivf_nprobe=search.get("nprobe", args.nlist),
        milvus_scann_reorder_k=search.get("reorder_k") or APISettings.model_fields["milvus_scann_reorder_k"].default,
        milvus_timeout_seconds=120.0,
        data_dir=data_dir,
    )
    return open_face_index(settings)


def index_params(args: argparse.Namespace) -> dict[str, Any]:
    if args.index == "HNSW":
        return {"M": args.hnsw_m, "efConstruction": args.ef_construction}
    if args.index in IVF_KINDS:
        return {"nlist": args.nlist}
    return {}


async def timed_searches(index: MilvusFaceIndex, queries: np.ndarray, top_k: int) -> tuple[Latency, list[list[str]]]:
    for q in queries[: min(20, len(queries))]:  # warm-up
        await index.search(TENANT, q, model_id=MODEL, limit=top_k, threshold=0.0)
    seconds, starts, results = [], [], []
    wall = time.perf_counter()
    for q in queries:
        started = time.perf_counter()
        matches = await index.search(TENANT, q, model_id=MODEL, limit=top_k, threshold=0.0)
        seconds.append(time.perf_counter() - started)
        starts.append(started - wall)
        results.append([m.face_id for m in matches])
    return Latency.of(seconds, time.perf_counter() - wall, starts), results


async def read_after_write(index: MilvusFaceIndex, pairs: int, rng: np.random.Generator) -> Latency:
    """add() then search() for that very vector: the search has to wait until Milvus has applied the insert."""
    seconds = []
    wall = time.perf_counter()
    for i in range(pairs):
        v = unit_rows(rng, 1)[0]
        key = f"{TENANT}/rw{i}/{time.time_ns()}"
        await index.add(FaceRecord(key, TENANT, f"rw{i}", key, MODEL, int(time.time() * 1000)), v)
        started = time.perf_counter()
        found = await index.search(TENANT, v, model_id=MODEL, limit=1, threshold=0.99)
        seconds.append(time.perf_counter() - started)
        if not found or found[0].face_id != f"rw{i}":
            raise AssertionError(f"read-your-writes failed at pair {i}: {found}")
    return Latency.of(seconds, time.perf_counter() - wall)


async def bench_size(backend: Backend, size: int, args: argparse.Namespace) -> list[Run]:
    collection = f"bench_{args.index.lower()}_{size}"
    levels = args.consistency.split(",")
    grid = search_grid(args)
    index = make_index(backend.uri, collection, args, levels[0], backend.work, grid[0])
    print(f"\n== {size} rows, {args.index}, backend {backend.spec}", flush=True)
    client = raw_client(backend.uri)
    try:
        if client.has_collection(collection):
            client.drop_collection(collection)
    finally:
        client.close()
    await index.open()
    lite = bool(index.server_version and index.server_version.startswith("milvus_lite"))

    stored = stored_vectors(size, seed=size)
    started = time.perf_counter()
    report_at = size // 10
    for start in range(0, size, args.batch):
        end = min(size, start + args.batch)
        records = [FaceRecord(f"{TENANT}/{face_id(i)}/0", TENANT, face_id(i), "-", MODEL, i) for i in range(start, end)]
        await index.add_many(records, stored[start:end], batch_size=args.batch)
        if end >= report_at:
            print(f"    inserted {end}/{size} ({end / (time.perf_counter() - started):.0f} rows/s)", flush=True)
            report_at += size // 10
    insert_s = time.perf_counter() - started

    started = time.perf_counter()
    await asyncio.to_thread(seal_and_index, backend.uri, collection, lite, size, args.index_timeout, args.compact)
    index_s = time.perf_counter() - started
    segments = await asyncio.to_thread(loaded_segments, backend.uri, collection)
    print(f"    sealed, indexed and loaded in {index_s:.1f} s; {len(segments)} segments {segments}", flush=True)

    rng = np.random.default_rng(size + 1)
    probe_queries, originals = probes(stored, max(args.queries, args.recall_queries), rng)
    random_queries = unit_rows(rng, args.recall_queries)
    exact_probe = exact_top(stored, probe_queries[: args.recall_queries], 5)
    exact_random = exact_top(stored, random_queries, 1)[:, 0]
    notes = []
    if not (exact_probe[:, 0] == originals[: args.recall_queries]).all():
        notes.append("some probes' exact nearest neighbour is not their original")

    runs = []
    await index.close()
    for level in levels:
        for search in grid:
            index = make_index(backend.uri, collection, args, level, backend.work, search)
            await index.open()
            run = await measure(index, size, level, probe_queries, exact_probe, random_queries, exact_random, args)
            await index.close()
            run.search_ef = search.get("ef", 0)
            run.nprobe, run.reorder_k = search.get("nprobe"), search.get("reorder_k") or None
            run.index_params = index_params(args)
            run.sealed_segments, run.segment_rows = (len(segments), segments) if segments else (None, [])
            run.insert_s, run.index_s = round(insert_s, 1), round(index_s, 1)
            run.insert_rows_per_s = round(size / insert_s)
            run.server_rss_mb, run.notes = backend.rss_mb(), notes
            runs.append(run)
            print_run(run)
    if not args.keep:
        client = raw_client(backend.uri)
        try:
            client.drop_collection(collection)
        finally:
            client.close()
    return runs


async def measure(
    index: MilvusFaceIndex,
    size: int,
    level: str,
    probe_queries: np.ndarray,
    exact_probe: np.ndarray,
    random_queries: np.ndarray,
    exact_random: np.ndarray,
    args: argparse.Namespace,
) -> Run:
    latency, results = await timed_searches(index, probe_queries[: args.queries], args.top_k)
    pairs = list(zip(results, exact_probe, strict=False))  # the first recall_queries probes
    recall_1 = np.mean([bool(r) and r[0] == face_id(int(e[0])) for r, e in pairs])
    recall_5 = np.mean([len({face_id(int(x)) for x in e} & set(r[:5])) / 5 for r, e in pairs])
    random_hits = []
    for q, e in zip(random_queries, exact_random, strict=True):
        found = await index.search(TENANT, q, model_id=MODEL, limit=1, threshold=-1.0)
        random_hits.append(bool(found) and found[0].face_id == face_id(int(e)))
    rng = np.random.default_rng(size + 2)
    return Run(
        size=size,
        index=index.index_type or args.index,
        consistency=level,
        search_ef=0,
        search=latency,
        recall_at_1_probes=round(float(recall_1), 4),
        recall_at_5_probes=round(float(recall_5), 4),
        recall_at_1_random=round(float(np.mean(random_hits)), 4),
        read_after_write=await read_after_write(index, args.rw_pairs, rng) if args.rw_pairs else None,
    )


def search_label(run: Run | dict[str, Any]) -> str:
    """The search parameters of a run, e.g. "ef 512" or "nprobe 64 reorder 100"."""
    r = run if isinstance(run, dict) else asdict(run)
    if r.get("nprobe"):
        return f"nprobe {r['nprobe']}" + (f" reorder {r['reorder_k']}" if r.get("reorder_k") else "")
    return f"ef {r['search_ef']}" if r.get("search_ef") else "-"


def print_run(run: Run) -> None:
    s = run.search
    assert s is not None
    line = (
        f"    {run.consistency:8s} {search_label(run):22s} search p50 {s.p50_ms:7.2f}  p95 {s.p95_ms:7.2f}  "
        f"p99 {s.p99_ms:7.2f}  mean {s.mean_ms:7.2f} ms  {s.qps:7.1f} QPS | "
        f"recall@1 probes {run.recall_at_1_probes:.3f}  random {run.recall_at_1_random:.3f}"
    )
    if run.read_after_write:
        r = run.read_after_write
        line += f" | read-after-write p50 {r.p50_ms:.1f} p95 {r.p95_ms:.1f} ms"
    print(line, flush=True)


def print_table(backend: str, runs: list[Run]) -> None:
    header = (
        f"{'backend':12s} {'rows':>9s} {'index':8s} {'consistency':11s} {'search':22s} {'insert/s':>9s} "
        f"{'index s':>8s} {'segs':>4s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s} {'mean ms':>7s} {'QPS':>7s} "
        f"{'R@1':>6s} {'R@1 rnd':>7s} {'RSS MB':>8s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in runs:
        s = r.search
        assert s is not None
        rss = f"{r.server_rss_mb:8.0f}" if r.server_rss_mb else f"{'-':>8s}"
        segs = f"{r.sealed_segments:4d}" if r.sealed_segments is not None else f"{'-':>4s}"
        print(
            f"{backend:12s} {r.size:9d} {r.index:8s} {r.consistency:11s} {search_label(r):22s} "
            f"{r.insert_rows_per_s:9.0f} {r.index_s:8.1f} {segs} {s.p50_ms:7.2f} {s.p95_ms:7.2f} {s.p99_ms:7.2f} "
            f"{s.mean_ms:7.2f} {s.qps:7.1f} {r.recall_at_1_probes:6.3f} {r.recall_at_1_random:7.3f} {rss}"
        )


def curve_point(run: Run | dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that a report or a plot needs (JSON-able); also takes a run of an older report."""
    r = run if isinstance(run, dict) else asdict(run)
    s = r["search"]
    search_params = {k: r.get(k) for k in ("ef", "nprobe", "reorder_k") if r.get(k)}
    if r.get("search_ef"):
        search_params["ef"] = r["search_ef"]
    return {
        "size": r["size"],
        "index": r["index"],
        "label": f"{r['index']} {search_label(r)}",
        "consistency": r["consistency"],
        "index_params": r.get("index_params") or {},
        "search_params": search_params,
        "p50_ms": s["p50_ms"],
        "p95_ms": s["p95_ms"],
        "p99_ms": s["p99_ms"],
        "qps": s["qps"],
        "recall_at_1": r["recall_at_1_probes"],
        "recall_at_5": r["recall_at_5_probes"],
        "insert_s": r["insert_s"],
        "build_s": r["index_s"],
        "sealed_segments": r.get("sealed_segments"),
        "server_rss_mb": r.get("server_rss_mb"),
    }


# -- plot -------------------------------------------------------------------------------------------------------

P99_TARGET_MS = 10.0
RECALL_TARGET = 0.99


def plot_curves(reports: list[dict[str, Any]], path: Path) -> Path:
    """p99 (and p50) latency and recall@1 versus collection size, one line per index + search parameters."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    lines: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        for point in report.get("curve") or [curve_point(r) for r in report["runs"]]:
            lines.setdefault(point["label"], []).append(point)
    fig, (lat, rec) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, points in lines.items():
        points = sorted(points, key=lambda p: p["size"])
        sizes = [p["size"] for p in points]
        (line,) = lat.plot(sizes, [p["p99_ms"] for p in points], marker="o", label=f"{label} p99")
        lat.plot(sizes, [p["p50_ms"] for p in points], linestyle=":", color=line.get_color(), label=f"{label} p50")
        rec.plot(sizes, [p["recall_at_1"] for p in points], marker="o", label=label)
    lat.axhline(P99_TARGET_MS, color="grey", linestyle="--", linewidth=1, label=f"target {P99_TARGET_MS:g} ms")
    rec.axhline(RECALL_TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {RECALL_TARGET}")
    lat.set(
        xscale="log",
        xlabel="faces in the tenant",
        ylabel="search latency (ms)",
        title="p99 (solid) and p50 (dotted) latency",
    )
    rec.set(xscale="log", xlabel="faces in the tenant", ylabel="recall@1 vs exact search", title="recall@1")
    lat.set_ylim(bottom=0)
    for ax in (lat, rec):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    backends = sorted({str(r.get("backend")) for r in reports})
    fig.suptitle(f"1:N search, one tenant, top-5, concurrency 1 ({', '.join(backends)}, {os.cpu_count()} CPUs)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- entry points -----------------------------------------------------------------------------------------------


def split(value: str) -> list[str]:
    return [v for v in str(value).split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.milvus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="lite", help="lite | lite-server | milvus235 | uri=<milvus uri>")
    parser.add_argument("--sizes", default="10000", help="comma-separated row counts")
    parser.add_argument(
        "--index", default="HNSW", choices=["HNSW", "FLAT", "IVF_FLAT", "IVF_SQ8", "SCANN", "AUTOINDEX"]
    )
    parser.add_argument("--consistency", default="Session", help="Session, Strong or both: Session,Strong")
    parser.add_argument(
        "--ef",
        default=str(APISettings.model_fields["milvus_search_ef"].default),
        help="HNSW search ef values to try, e.g. 128,512 (default: the setting's default)",
    )
    parser.add_argument("--hnsw-m", type=int, default=APISettings.model_fields["milvus_hnsw_m"].default)
    parser.add_argument(
        "--ef-construction", type=int, default=APISettings.model_fields["milvus_hnsw_ef_construction"].default
    )
    parser.add_argument("--nlist", type=int, default=APISettings.model_fields["milvus_ivf_nlist"].default)
    parser.add_argument(
        "--nprobe",
        default=str(APISettings.model_fields["milvus_ivf_nprobe"].default),
        help="IVF/SCANN nprobe values to try, e.g. 32,64,128",
    )
    parser.add_argument(
        "--reorder-k",
        default=str(APISettings.model_fields["milvus_scann_reorder_k"].default),
        help="SCANN reorder_k values to try",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="milvus.yaml override for --backend milvus235, e.g. dataCoord.segment.maxSize=2048 (repeatable)",
    )
    parser.add_argument("--compact", action="store_true", help="compact the sealed segments before indexing")
    parser.add_argument("--queries", type=int, default=1000, help="timed searches per size (concurrency 1)")
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--rw-pairs", type=int, default=0, help="add+search pairs timed for read-after-write")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert call")
    parser.add_argument("--index-timeout", type=float, default=4 * 3600, help="seconds to wait for the index build")
    parser.add_argument("--work-dir", type=Path, help="server data folder (default: a temporary one, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the collections (and --work-dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--plot", type=Path, help="draw p99 latency and recall@1 versus size into this PNG")
    parser.add_argument(
        "--plot-from", type=Path, nargs="+", help="JSON reports of earlier runs to plot (with --plot; no benchmark)"
    )
    return parser


def server_settings(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE strings as milvus.yaml overrides, values parsed as YAML scalars (2048 -> int)."""
    import yaml

    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--server-setting wants KEY=VALUE, got {pair!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Benchmark every size of `args`, write the JSON report (and the plot) and return the report."""
    sizes = [int(s) for s in split(args.sizes)]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    work.mkdir(parents=True, exist_ok=True)
    backend = Backend(args.backend, work, server_settings(args.server_setting))
    runs: list[Run] = []
    started = time.time()
    load = {"before": os.getloadavg()}
    try:
        backend.start()
        for size in sizes:
            runs.extend(asyncio.run(bench_size(backend, size, args)))
    finally:
        backend.stop()
        if args.work_dir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load["after"] = os.getloadavg()
    print_table(args.backend, runs)

    args.out.mkdir(parents=True, exist_ok=True)
    name = "uri" if args.backend.startswith("uri=") else args.backend
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = args.out / f"milvus-{name}-{args.index.lower()}-{'-'.join(map(str, sizes))}-{stamp}.json"
    report = {
        "command": command,
        "backend": args.backend,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        # 1/5/15-minute load averages; the benchmark itself adds about one busy core while it loads and searches.
        "loadavg": {k: [round(x, 2) for x in v] for k, v in load.items()},
        "params": {k: str(v) for k, v in vars(args).items()},
        "server_settings": server_settings(args.server_setting),
        "probe_cosine": PROBE_COSINE,
        "curve": [curve_point(r) for r in runs],
        "runs": [asdict(r) for r in runs],
        "json": str(path),
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    if args.plot:
        print(f"plot {plot_curves([report], args.plot)}")
    return report


# The index the curve is drawn for unless told otherwise, with the search settings worth comparing: the
# measured best at a million faces on a 2-core server (docs/PERFORMANCE.md).
CURVE_INDEX = "SCANN"
CURVE_OPTIONS: dict[str, dict[str, Any]] = {
    "SCANN": {"nlist": 1024, "nprobe": "128,256", "reorder_k": "100"},
    "HNSW": {"ef": "128,512"},
}


def run_curve(
    sizes: list[int],
    *,
    backend: str = "milvus235",
    index: str | None = None,
    out: Path = ROOT / "bench-results",
    plot: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One benchmark over `sizes` (e.g. [10_000, 100_000, 1_000_000]) for modules that drive several benchmarks.

    `options` are this script's other command-line options by their argparse names, e.g. ef="128,512",
    nprobe="64", nlist=1024, server_setting=["dataCoord.segment.maxSize=2048"], compact=True, queries=500;
    CURVE_OPTIONS[index] fills in the index's settings not given. `index` None: CURVE_INDEX on a Milvus server,
    HNSW on milvus-lite (which cannot build SCANN).
    Returns the JSON report: "curve" has one entry per size and search setting with p50/p95/p99 ms, QPS,
    recall@1, build seconds, sealed segments, server RSS and the index/search parameters.
    """
    index = index or ("HNSW" if backend.startswith("lite") else CURVE_INDEX)
    args = build_parser().parse_args([])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise TypeError(f"unknown benchmark option(s): {', '.join(unknown)}")
    args.sizes = ",".join(str(int(s)) for s in sizes)
    args.backend, args.index, args.out, args.plot = backend, index, Path(out), plot
    for key, value in (CURVE_OPTIONS.get(index, {}) | options).items():
        setattr(args, key, value)
    for key in ("ef", "nprobe", "reorder_k"):  # accept lists as well as "a,b" strings
        value = getattr(args, key)
        if isinstance(value, list | tuple):
            setattr(args, key, ",".join(map(str, value)))
    command = f"run_curve({list(sizes)}, backend={backend!r}, index={index!r}, **{options!r})"
    return run(args, command)


def main() -> None:
    args = build_parser().parse_args()
    if args.plot_from:
        if not args.plot:
            raise SystemExit("--plot-from needs --plot PATH")
        reports = [json.loads(p.read_text()) for p in args.plot_from]
        print(f"plot {plot_curves(reports, args.plot)}")
        return
    run(args, shlex.join(["python", "-m", "bench.milvus", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
