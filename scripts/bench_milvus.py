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
    uv run --frozen python scripts/bench_milvus.py --backend lite --sizes 100000
    uv run --frozen python scripts/bench_milvus.py --backend milvus235 --sizes 100000,1000000 --index HNSW
    uv run --frozen python scripts/bench_milvus.py --backend milvus235 --sizes 5000 --queries 300 \\
        --consistency Session,Strong
    uv run --frozen python scripts/bench_milvus.py --backend uri=http://127.0.0.1:19530 --sizes 10000

Servers (lite-server, milvus235) are started on 127.0.0.1 in a temporary folder and stopped at the end.
Results: a table on stdout and JSON in bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the server launchers live with the tests

from faceauth.config import APISettings, load_api_settings  # noqa: E402
from faceauth.storage.vectors import FaceRecord, MilvusFaceIndex, open_face_index  # noqa: E402
from tests.servers import MilvusLiteServer, MilvusStandaloneServer  # noqa: E402

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

    @classmethod
    def of(cls, seconds: list[float], wall: float) -> Latency:
        ms = np.asarray(seconds) * 1000.0
        return cls(
            n=len(ms),
            p50_ms=round(float(np.percentile(ms, 50)), 2),
            p95_ms=round(float(np.percentile(ms, 95)), 2),
            p99_ms=round(float(np.percentile(ms, 99)), 2),
            mean_ms=round(float(ms.mean()), 2),
            qps=round(len(ms) / wall, 1),
        )


@dataclass
class Run:
    size: int
    index: str
    consistency: str
    search_ef: int
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
    def __init__(self, spec: str, work: Path) -> None:
        self.spec = spec
        self.work = work
        self.server: MilvusLiteServer | MilvusStandaloneServer | None = None
        if spec == "lite":
            self.uri = str(work / "milvus.db")
        elif spec == "lite-server":
            self.server = MilvusLiteServer(work / "lite-server")
        elif spec == "milvus235":
            self.server = MilvusStandaloneServer(work / "milvus-2.3.5")
        elif spec.startswith("uri="):
            self.uri = spec[4:]
        else:
            raise SystemExit(f"unknown backend {spec!r}")

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
        pid = self.server.proc.pid if self.server is not None and self.server.proc else None
        if pid is None and self.spec != "lite":
            return None
        try:
            status = Path(f"/proc/{pid or 'self'}/status").read_text()
        except OSError:
            return None
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None)
        return round(kb / 1024, 1) if kb else None


def raw_client(uri: str) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, timeout=600, dedicated=True)


def seal_and_index(uri: str, collection: str, lite: bool, size: int, timeout: float) -> None:
    """Flush, wait for the vector index to cover every row, and reload so searches run on indexed segments.

    (A benchmark step: the Face API never flushes; Milvus seals and indexes segments on its own over time.)
    """
    client = raw_client(uri)
    try:
        client.flush(collection, timeout=timeout)
        deadline = time.monotonic() + timeout
        if not lite:  # milvus-lite builds its indexes synchronously inside load()
            last = -1
            while True:
                info = client.describe_index(collection, "embedding", timeout=60) or {}
                done, total = int(info.get("indexed_rows", 0)), int(info.get("total_rows", 0))
                pending = int(info.get("pending_index_rows", 0))
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


# -- the benchmark ----------------------------------------------------------------------------------------------


def make_index(
    uri: str, collection: str, index_type: str, consistency: str, data_dir: Path, ef: int = 128
) -> MilvusFaceIndex:
    settings = load_api_settings(
        milvus_uri=uri,
        milvus_collection=collection,
        milvus_index_type=index_type,
        milvus_consistency_level=consistency,
        milvus_search_ef=ef,
        milvus_timeout_seconds=120.0,
        data_dir=data_dir,
    )
    return open_face_index(settings)


async def timed_searches(index: MilvusFaceIndex, queries: np.ndarray, top_k: int) -> tuple[Latency, list[list[str]]]:
    for q in queries[: min(20, len(queries))]:  # warm-up
        await index.search(TENANT, q, model_id=MODEL, limit=top_k, threshold=0.0)
    seconds, results = [], []
    wall = time.perf_counter()
    for q in queries:
        started = time.perf_counter()
        matches = await index.search(TENANT, q, model_id=MODEL, limit=top_k, threshold=0.0)
        seconds.append(time.perf_counter() - started)
        results.append([m.face_id for m in matches])
    return Latency.of(seconds, time.perf_counter() - wall), results


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
    index = make_index(backend.uri, collection, args.index, levels[0], backend.work)
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
    await asyncio.to_thread(seal_and_index, backend.uri, collection, lite, size, args.index_timeout)
    index_s = time.perf_counter() - started
    print(f"    sealed, indexed and loaded in {index_s:.1f} s", flush=True)

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
        for ef in [int(e) for e in args.ef.split(",")]:
            index = make_index(backend.uri, collection, args.index, level, backend.work, ef)
            await index.open()
            run = await measure(index, size, level, ef, probe_queries, exact_probe, random_queries, exact_random, args)
            await index.close()
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
    ef: int,
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
        search_ef=ef,
        search=latency,
        recall_at_1_probes=round(float(recall_1), 4),
        recall_at_5_probes=round(float(recall_5), 4),
        recall_at_1_random=round(float(np.mean(random_hits)), 4),
        read_after_write=await read_after_write(index, args.rw_pairs, rng) if args.rw_pairs else None,
    )


def print_run(run: Run) -> None:
    s = run.search
    assert s is not None
    line = (
        f"    {run.consistency:8s} ef {run.search_ef:<5d} search p50 {s.p50_ms:7.2f}  p95 {s.p95_ms:7.2f}  "
        f"p99 {s.p99_ms:7.2f}  mean {s.mean_ms:7.2f} ms  {s.qps:7.1f} QPS | "
        f"recall@1 probes {run.recall_at_1_probes:.3f}  random {run.recall_at_1_random:.3f}"
    )
    if run.read_after_write:
        r = run.read_after_write
        line += f" | read-after-write p50 {r.p50_ms:.1f} p95 {r.p95_ms:.1f} ms"
    print(line, flush=True)


def print_table(backend: str, runs: list[Run]) -> None:
    header = (
        f"{'backend':12s} {'rows':>9s} {'index':8s} {'consistency':11s} {'ef':>5s} {'insert/s':>9s} {'index s':>8s} "
        f"{'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s} {'mean ms':>7s} {'QPS':>7s} {'R@1':>6s} {'R@1 rnd':>7s} "
        f"{'RSS MB':>8s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in runs:
        s = r.search
        assert s is not None
        rss = f"{r.server_rss_mb:8.0f}" if r.server_rss_mb else f"{'-':>8s}"
        print(
            f"{backend:12s} {r.size:9d} {r.index:8s} {r.consistency:11s} {r.search_ef:5d} "
            f"{r.insert_rows_per_s:9.0f} {r.index_s:8.1f} {s.p50_ms:7.2f} {s.p95_ms:7.2f} {s.p99_ms:7.2f} "
            f"{s.mean_ms:7.2f} {s.qps:7.1f} {r.recall_at_1_probes:6.3f} {r.recall_at_1_random:7.3f} {rss}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="lite", help="lite | lite-server | milvus235 | uri=<milvus uri>")
    parser.add_argument("--sizes", default="10000", help="comma-separated row counts")
    parser.add_argument("--index", default="HNSW", choices=["HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"])
    parser.add_argument("--consistency", default="Session", help="Session, Strong or both: Session,Strong")
    parser.add_argument(
        "--ef",
        default=str(APISettings.model_fields["milvus_search_ef"].default),
        help="HNSW search ef values to try, e.g. 128,512 (default: the setting's default)",
    )
    parser.add_argument("--queries", type=int, default=1000, help="timed searches per size (concurrency 1)")
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--rw-pairs", type=int, default=0, help="add+search pairs timed for read-after-write")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert call")
    parser.add_argument("--index-timeout", type=float, default=4 * 3600, help="seconds to wait for the index build")
    parser.add_argument("--work-dir", type=Path, help="server data folder (default: a temporary one, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the collections (and --work-dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    work.mkdir(parents=True, exist_ok=True)
    backend = Backend(args.backend, work)
    runs: list[Run] = []
    started = time.time()
    try:
        backend.start()
        for size in sizes:
            runs.extend(asyncio.run(bench_size(backend, size, args)))
    finally:
        backend.stop()
        if args.work_dir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(args.backend, runs)

    args.out.mkdir(parents=True, exist_ok=True)
    name = "uri" if args.backend.startswith("uri=") else args.backend
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = args.out / f"milvus-{name}-{args.index.lower()}-{'-'.join(map(str, sizes))}-{stamp}.json"
    report = {
        "command": " ".join(sys.argv),
        "backend": args.backend,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "params": {k: str(v) for k, v in vars(args).items()},
        "probe_cosine": PROBE_COSINE,
        "runs": [asdict(r) for r in runs],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
