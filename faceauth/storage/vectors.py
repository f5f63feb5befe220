"""Face vectors in Milvus: one row per stored face revision, partitioned by tenant.

PROTOCOL (implemented by MilvusFaceIndex below; the Face API service depends only on FaceIndex).

The collection (one per deployment, `FACEAUTH_MILVUS_COLLECTION`):

    row_id      VARCHAR(512)  primary key: the object key of the revision, "<tenant>/<face_id>/<ms>-<rand>"
    tenant      VARCHAR(256)  partition key: Milvus hashes tenants into its default number of partitions
                              (64 on Milvus 2.3, 16 in milvus-lite), so a tenant filter scans one of them
    face_id     VARCHAR(128)
    subject_id  VARCHAR(128)  the person the face belongs to (the face id itself unless enrolled under a subject)
    object_key  VARCHAR(512)
    model_id    VARCHAR(128)  the embedding model; vectors of different models are never compared
    created_at  INT64         ms since the epoch
    embedding   FLOAT_VECTOR(dim), metric COSINE

Rows are never upserted: Milvus 2.3.5 loses upserted rows from tenant-filtered searches and queries (partition
key collections), so a face is replaced by adding the new revision and then removing the old rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from faceauth.config import APISettings
from faceauth.kit.metrics import NULL_OBSERVER, StoreObserver, timed_store_call
from faceauth.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)
# milvus-lite has no MVCC timestamp to give a query iterator; pymilvus warns about it on every scan.
logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)

T = TypeVar("T")


@dataclass(frozen=True)
class FaceRecord:
    """One stored revision of a face. `row_id` is the Milvus primary key (unique per revision)."""

    row_id: str
    tenant: str
    face_id: str
    object_key: str
    model_id: str
    created_at_ms: int
    subject_id: str = ""  # empty: the face is its own subject

    def __post_init__(self) -> None:
        if not self.subject_id:
            object.__setattr__(self, "subject_id", self.face_id)


@dataclass(frozen=True)
class Match:
    face_id: str
    score: float
    subject_id: str = ""


class FaceIndex(Protocol):
    async def open(self) -> None:
        """Connect; create the collection and index if missing; load it. Idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageUnavailable("vectors", ...) when the server does not answer."""

    async def add(self, record: FaceRecord, embedding: np.ndarray) -> None:
        """Insert one row. Visible to the next find()/search() of this process (read-your-writes)."""

    async def find(self, tenant: str, face_id: str) -> list[FaceRecord]:
        """Every stored revision of (tenant, face_id), newest first; [] if none."""

    async def remove(self, tenant: str, row_ids: list[str]) -> None:
        """Delete rows by primary key within the tenant. Missing rows are not an error."""

    async def search(
        self,
        tenant: str,
        embedding: np.ndarray,
        *,
        model_id: str,
        limit: int,
        threshold: float,
        group_by: GroupBy = "face",
        exclude: Exclusion | None = None,
    ) -> list[Match]:
        """Nearest faces of this tenant embedded by `model_id`, score (cosine) >= threshold, best first, at most
        `limit` matches and one per face_id (group_by "face") or per subject, its best face (group_by "subject").
        `exclude` leaves out the faces of one subject and one face id (a duplicate check of a new enrolment)."""

    async def subject_faces(self, tenant: str, subject_id: str) -> list[FaceRecord]:
        """Every stored row of the subject's faces, newest first."""

    async def list_subjects(self, tenant: str, *, after: str | None, limit: int) -> list[list[FaceRecord]]:
        """The tenant's first `limit` subjects in subject_id order after `after` (a cursor), each as its rows."""

    async def vectors(self, tenant: str, *, model_id: str, face_id: str | None = None, max_rows: int) -> TenantVectors:
        """Stored rows and embeddings of the tenant's faces (only `face_id`'s when given) made by `model_id`.
        More than `max_rows` rows raise TooManyRows."""

    async def purge_tenant(self, tenant: str) -> int:
        """Delete every row of the tenant; the number of rows there were."""

    async def other_model_ids(self, model_id: str) -> list[str]:
        """Embedding model ids other than `model_id` that still have rows in the collection (sorted, at most a
        few dozen). Cheap on any collection size: readiness uses it to warn after a model change."""

    async def rows_of_other_models(self, model_id: str, limit: int) -> list[FaceRecord]:
        """Up to `limit` rows embedded by another model than `model_id`, any tenant (to re-embed them)."""

    async def scan_rows(self, *, after: str | None = None, limit: int = 1000) -> list[FaceRecord]:
        """Rows of every tenant in row_id order: up to `limit` whose row_id sorts after `after` (None: from the
        first); [] when there are no more. Pass the last row_id of a page to get the next one. For maintenance
        passes over the whole collection (the orphan sweep), not requests; rows written meanwhile may be missed."""


GroupBy = Literal["face", "subject"]


@dataclass(frozen=True)
class Exclusion:
    """Rows a search must not return: a subject's faces and one face id."""

    subject_id: str
    face_id: str


@dataclass(frozen=True)
class TenantVectors:
    records: list[FaceRecord]
    embeddings: np.ndarray  # (len(records), dim) float32


class TooManyRows(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} rows")
        self.limit = limit


class IncompatibleCollection(RuntimeError):
    """The collection exists with another schema (e.g. another embedding dimension). A configuration problem,
    not an outage: re-trying cannot fix it, so it is not a StorageUnavailable."""


# -- schema -----------------------------------------------------------------------------------------------------

VECTOR_FIELD = "embedding"
METRIC = "COSINE"
# Field -> (pymilvus DataType name, VARCHAR max length). Lengths are bytes of UTF-8, checked before inserting.
SCALAR_FIELDS: dict[str, tuple[str, int | None]] = {
    "row_id": ("VARCHAR", 512),
    "tenant": ("VARCHAR", 256),
    "face_id": ("VARCHAR", 128),
    "subject_id": ("VARCHAR", 128),
    "object_key": ("VARCHAR", 512),
    "model_id": ("VARCHAR", 128),
    "created_at": ("INT64", None),
}
_OUTPUT_FIELDS = list(SCALAR_FIELDS)
# Fields every search filters on; Milvus servers get a scalar index on each (see _ensure_filter_indexes).
_FILTER_INDEXED_FIELDS = ("tenant", "model_id")
# Milvus caps topk (and query windows) at 16384.
MAX_TOPK = 16384
# A face has one revision, two while it is being replaced; more only after failures. Plenty of headroom.
_MAX_REVISIONS = 1024
# Rows fetched per round trip when scanning a tenant (listing, clustering, purging).
_SCAN_BATCH = 1000
_DELETE_BATCH = 1000
# Enough distinct foreign model ids for a readiness warning; each one costs one small query.
_MAX_OTHER_MODELS = 32
# After a failed connect, calls fail at once for this long before the next attempt (seconds).
_RECONNECT_PAUSE = 1.0
# Concurrent Milvus calls per process: each blocks a thread while it waits on the network.
_WORKERS = 16
# pymilvus starts one embedded milvus-lite per `.db` path, but two clients created at once race to start it
# (the loser fails on the data folder's lock): create embedded clients one at a time.
_EMBEDDED_START = threading.Lock()
# This process's newest write timestamp per (uri, db, collection); see MilvusFaceIndex._read_consistency.
_SESSION_TS: dict[tuple[str, str, str], int] = {}
_SESSION_LOCK = threading.Lock()
_UNKNOWN_TS = -1


def quote(value: str) -> str:
    """A Milvus filter string literal for `value`.

    Both parsers (Milvus's ANTLR grammar and milvus-lite's tokenizer) accept exactly these escapes inside
    double quotes: \\\\ \\" \\n \\r \\t; everything else may appear raw. JSON-style \\uXXXX escapes are NOT safe
    (milvus-lite rejects them, Go rejects surrogate pairs), hence no json.dumps.
    """
    if not isinstance(value, str):
        raise TypeError(f"filter values must be str, got {type(value).__name__}")
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _quote_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _as_rows(embedding: np.ndarray) -> np.ndarray:
    """One embedding as a (1, dim) matrix; a matrix as is (checked by the caller)."""
    array = np.asarray(embedding)
    return array[None, :] if array.ndim == 1 else array


# -- errors -----------------------------------------------------------------------------------------------------

# Messages of failures that mean "no usable connection" (the client is then rebuilt on the next call).
_CONNECTION_MARKERS = (
    "unavailable",
    "deadline",
    "fail connecting",
    "failed to connect",
    "retry timeout",
    "connection refused",
    "connection reset",
    "socket closed",
    "channel",
    "not connected",
    "closed",
)
# Messages that mean the collection is not loaded in the server (e.g. a milvus-lite server restarted).
_NOT_LOADED_MARKERS = ("not loaded", "collection not loaded", "released")
# Messages that mean the server cannot build the requested index type (milvus-lite without faiss, or SCANN,
# which milvus-lite accepts at create_index but cannot build).
_UNSUPPORTED_INDEX_MARKERS = (
    "faiss",
    "not supported",
    "unsupported",
    "reserved for a future",
    "invalid index type",
    "unknown index_type",
)


def _pymilvus_errors() -> tuple[type[BaseException], ...]:
    import grpc
    from pymilvus.exceptions import MilvusException

    return (MilvusException, grpc.RpcError)


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # MilvusException keeps the server's reason here
    if callable(getattr(exc, "details", None)):  # grpc.RpcError
        try:
            message = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        except Exception:
            message = None
    text = str(message or exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | concurrent.futures.TimeoutError):
        return True
    code = getattr(exc, "code", None)
    if code == 2:  # pymilvus's "cannot connect" code
        return True
    return any(marker in _describe(exc).lower() for marker in _CONNECTION_MARKERS)


def _mentions(exc: BaseException, markers: Sequence[str]) -> bool:
    text = _describe(exc).lower()
    return any(m in text for m in markers)


class _Unavailable(Exception):
    """Internal: a failed Milvus call, already described (becomes StorageUnavailable on the event loop)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# -- the index --------------------------------------------------------------------------------------------------


class MilvusFaceIndex:
    """FaceIndex on Milvus (a server, or milvus-lite embedded when the URI is a `.db` path).

    Every pymilvus call is blocking, so calls run in a small dedicated thread pool, each with the configured
    timeout. Failures to reach or use Milvus raise StorageUnavailable("vectors", ...); a client whose connection
    broke is thrown away and rebuilt on the next call, so the index recovers by itself when the server returns.

    Read-your-writes without flush: with consistency "Session" (the default) reads wait until this process's
    latest insert or delete is visible, using a server timestamp taken after each write (see
    `_read_consistency`); with "Strong" they wait for every write acknowledged anywhere, at ~200-400 ms per read
    on Milvus 2.3. milvus-lite always reads its latest state.

    Never calls Milvus `upsert` (see the module docstring).
    """

    # The Face API points this at its metrics (call latency and errors); a no-op otherwise.
    observer: StoreObserver = NULL_OBSERVER

    def __init__(
        self,
        uri: str,
        *,
        collection: str,
        dim: int,
        token: str | None = None,
        db_name: str = "",
        index_type: str = "HNSW",
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        search_ef: int = 512,
        ivf_nlist: int = 1024,
        ivf_nprobe: int = 32,
        scann_reorder_k: int = 100,
        consistency_level: str = "Session",
        timeout: float = 10.0,
        max_faces_per_subject: int = 10,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.token = token or ""
        self.db_name = db_name
        self.requested_index_type = index_type.upper()
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.search_ef = search_ef
        self.ivf_nlist = ivf_nlist
        self.ivf_nprobe = ivf_nprobe
        self.scann_reorder_k = scann_reorder_k
        self.consistency_level = consistency_level
        self.timeout = timeout
        self.max_faces_per_subject = max_faces_per_subject
        # What the collection really has (another process may have created it, or a fallback happened).
        self.index_type: str | None = None
        self.server_version: str | None = None
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._connect_failed_at = -_RECONNECT_PAUSE
        self._connect_error = ""
        # milvus-lite's engine is not safe for concurrent writes to one collection: serialize ours.
        self._write_lock: threading.Lock | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._opened = False
        self._session_key = (uri, db_name, collection)
        # milvus-lite ignores consistency (its reads always see every write) and lacks AllocTimestamp.
        self._alloc_supported = True
        self._row_scans = _RowScans()  # scan_rows: iterators kept between the pages of a pass

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        # Creation, index build and load are several calls, each with its own timeout.
        await self._run("open", self._open_sync, rpcs=8, retry_not_loaded=False)
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        self._row_scans.close_all()
        pool, self._pool = self._pool, None
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.to_thread(client.close)
            except Exception as exc:  # closing a dead connection is not worth an error
                log.debug("closing the Milvus client: %s", exc)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def ping(self) -> None:
        def check(client: Any) -> None:
            if not client.has_collection(self.collection, timeout=self._ping_timeout):
                raise _Unavailable(f"collection {self.collection!r} does not exist")

        await self._run("ping", check, rpcs=1, timeout=self._ping_timeout)

    @property
    def _ping_timeout(self) -> float:
        return min(self.timeout, 3.0)

    # -- writes ---------------------------------------------------------------------------------------------

    async def add(self, record: FaceRecord, embedding: np.ndarray) -> None:
        await self.add_many([record], _as_rows(embedding))

    async def add_many(self, records: Sequence[FaceRecord], embeddings: np.ndarray, *, batch_size: int = 2000) -> None:
        """Insert rows in batches (bulk loads, benchmarks). Same visibility as add(); not atomic across batches."""
        vectors = self._check_vectors(embeddings, len(records))
        rows = [self._row(r, v) for r, v in zip(records, vectors, strict=True)]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            await self._run("insert", lambda c, b=batch: self._write(c, "insert", data=b), rpcs=2)

    async def remove(self, tenant: str, row_ids: list[str]) -> None:
        ids = list(dict.fromkeys(row_ids))  # unique, order kept
        for start in range(0, len(ids), _DELETE_BATCH):
            # The tenant term keeps other tenants' rows out of reach and lets Milvus prune to one partition.
            # Milvus 2.3 resolves such an expression with an internal query at the delete's consistency level,
            # which pymilvus sends as Strong: rows inserted just before are found.
            expr = f"tenant == {quote(tenant)} and row_id in {_quote_list(ids[start : start + _DELETE_BATCH])}"
            await self._run("delete", lambda c, e=expr: self._write(c, "delete", filter=e), rpcs=2)

    # -- reads ----------------------------------------------------------------------------------------------

    async def find(self, tenant: str, face_id: str) -> list[FaceRecord]:
        expr = f"tenant == {quote(tenant)} and face_id == {quote(face_id)}"
        rows = await self._run(
            "query",
            lambda c: c.query(
                self.collection,
                filter=expr,
                output_fields=_OUTPUT_FIELDS,
                limit=_MAX_REVISIONS,
                timeout=self.timeout,
                **self._read_consistency(c),
            ),
        )
        return _newest_first([_record(r) for r in rows])

    async def rows_of_other_models(self, model_id: str, limit: int) -> list[FaceRecord]:
        """Up to `limit` rows embedded by another model than `model_id` (to re-embed them), any tenant."""
        rows = await self._run(
            "query",
            lambda c: c.query(
                self.collection,
                filter=f"model_id != {quote(model_id)}",
                output_fields=_OUTPUT_FIELDS,
                limit=limit,
                timeout=self.timeout,
                **self._read_consistency(c),
            ),
        )
        return [_record(r) for r in rows]

    async def search(
        self,
        tenant: str,
        embedding: np.ndarray,
        *,
        model_id: str,
        limit: int,
        threshold: float,
        group_by: GroupBy = "face",
        exclude: Exclusion | None = None,
    ) -> list[Match]:
        vector = self._check_vectors(_as_rows(embedding), 1)[0]
        if limit <= 0:
            return []
        # While a face is being replaced two of its revisions exist, and a subject has up to
        # `max_faces_per_subject` faces: ask for enough rows that `limit` groups survive.
        per_group = 2 * (self.max_faces_per_subject if group_by == "subject" else 1)
        request_limit = min(limit * per_group + 2, MAX_TOPK)
        expr = f"tenant == {quote(tenant)} and model_id == {quote(model_id)}"
        if exclude is not None:
            expr += f" and subject_id != {quote(exclude.subject_id)} and face_id != {quote(exclude.face_id)}"

        def call(client: Any) -> Any:
            return client.search(
                self.collection,
                data=[vector],
                filter=expr,
                limit=request_limit,
                output_fields=["face_id", "subject_id"],
                search_params={"metric_type": METRIC, "params": self._search_params(request_limit)},
                anns_field=VECTOR_FIELD,
                timeout=self.timeout,
                **self._read_consistency(client),
            )

        hits = (await self._run("search", call))[0]
        best: dict[str, Match] = {}
        for hit in hits:
            entity = hit["entity"]
            match = Match(str(entity["face_id"]), float(hit["distance"]), str(entity["subject_id"]))
            group = match.subject_id if group_by == "subject" else match.face_id
            if match.score >= threshold and (group not in best or match.score > best[group].score):
                best[group] = match
        ranked = sorted(best.values(), key=lambda m: (-m.score, m.face_id))
        return ranked[:limit]

    async def subject_faces(self, tenant: str, subject_id: str) -> list[FaceRecord]:
        expr = f"tenant == {quote(tenant)} and subject_id == {quote(subject_id)}"
        rows = await self._run("query", lambda c: self._scan(c, expr, _OUTPUT_FIELDS, max_rows=None))
        return _newest_first([_record(r) for r in rows])

    async def list_subjects(self, tenant: str, *, after: str | None, limit: int) -> list[list[FaceRecord]]:
        """Milvus cannot sort a query, so this scans the tenant's rows after the cursor and keeps the `limit`
        smallest subject ids: one pass over the tenant per page (an admin listing, not a hot path)."""
        expr = f"tenant == {quote(tenant)}"
        if after is not None:
            expr += f" and subject_id > {quote(after)}"
        kept: dict[str, list[FaceRecord]] = {}

        def keep(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                record = _record(row)
                if record.subject_id in kept or len(kept) < limit:
                    kept.setdefault(record.subject_id, []).append(record)
                    continue
                largest = max(kept)
                if record.subject_id < largest:
                    del kept[largest]
                    kept[record.subject_id] = [record]

        await self._run("query", lambda c: self._scan(c, expr, _OUTPUT_FIELDS, max_rows=None, each=keep))
        return [_newest_first(kept[subject]) for subject in sorted(kept)]

    async def vectors(self, tenant: str, *, model_id: str, face_id: str | None = None, max_rows: int) -> TenantVectors:
        expr = f"tenant == {quote(tenant)} and model_id == {quote(model_id)}"
        if face_id is not None:
            expr += f" and face_id == {quote(face_id)}"
        fields = [*_OUTPUT_FIELDS, VECTOR_FIELD]
        rows = await self._run("query", lambda c: self._scan(c, expr, fields, max_rows=max_rows), rpcs=4)
        # Keep one row (the newest revision) per face.
        newest: dict[str, tuple[FaceRecord, Any]] = {}
        for row in rows:
            record = _record(row)
            if record.face_id not in newest or record.created_at_ms > newest[record.face_id][0].created_at_ms:
                newest[record.face_id] = (record, row[VECTOR_FIELD])
        ordered = sorted(newest.values(), key=lambda item: item[0].face_id)
        matrix = np.asarray([v for _, v in ordered], dtype=np.float32).reshape(len(ordered), self.dim)
        return TenantVectors([r for r, _ in ordered], matrix)

    async def purge_tenant(self, tenant: str) -> int:
        expr = f"tenant == {quote(tenant)}"

        def purge(client: Any) -> int:
            rows = client.query(
                self.collection,
                filter=expr,
                output_fields=["count(*)"],
                timeout=self.timeout,
                **self._read_consistency(client),
            )
            count = int(rows[0]["count(*)"]) if rows else 0
            if count:
                self._write(client, "delete", filter=expr)
            return count

        return await self._run("purge", purge, rpcs=3)

    async def other_model_ids(self, model_id: str) -> list[str]:
        """Each step asks for one row of a model not seen yet, so the cost is one tiny query per distinct model,
        whatever the collection size."""
        found: list[str] = []

        def step(client: Any) -> list[dict[str, Any]]:
            expr = f"model_id != {quote(model_id)}"
            if found:
                expr += f" and model_id not in {_quote_list(found)}"
            return client.query(
                self.collection,
                filter=expr,
                output_fields=["model_id"],
                limit=1,
                timeout=self.timeout,
                **self._read_consistency(client),
            )

        for _ in range(_MAX_OTHER_MODELS):
            rows = await self._run("query", step)
            if not rows:
                break
            found.append(str(rows[0]["model_id"]))
        return sorted(found)

    async def count(self) -> int:
        """Rows in the collection (exact; a full count, meant for tests and tools rather than requests)."""
        rows = await self._run(
            "count",
            lambda c: c.query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self.timeout, consistency_level="Strong"
            ),
        )
        return int(rows[0]["count(*)"])

    # -- full passes (maintenance) --------------------------------------------------------------------------

    async def scan_rows(self, *, after: str | None = None, limit: int = _SCAN_BATCH) -> list[FaceRecord]:
        # Milvus orders rows by primary key only for query iterators (which pymilvus pages by "row_id > last"),
        # and a new iterator costs over a second on Milvus 2.3: the iterator of a pass is kept between its pages,
        # found again by the row_id its last page ended with.
        if limit < 1:
            raise ValueError("limit must be positive")

        def page(client: Any) -> list[dict[str, Any]]:
            scan = self._row_scans.resume(client, after)
            if scan is None:
                expr = f"row_id > {quote(after)}" if after is not None else ""
                iterator = client.query_iterator(
                    self.collection,
                    batch_size=_SCAN_BATCH,
                    filter=expr,
                    output_fields=_OUTPUT_FIELDS,
                    timeout=self.timeout,
                    **self._read_consistency(client),
                )
                scan = _RowScan(client, iterator)
            try:
                rows = scan.take(limit, max_seconds=self.timeout)
            except BaseException:
                scan.close()
                raise
            if rows:
                self._row_scans.park(str(rows[-1]["row_id"]), scan)
            else:
                scan.close()
            return rows

        return [_record(r) for r in await self._run("scan", page, rpcs=4)]

    # -- internals: rows ------------------------------------------------------------------------------------

    def _check_vectors(self, embeddings: np.ndarray, rows: int) -> np.ndarray:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (rows, self.dim):
            raise ValueError(f"expected {rows} embedding(s) of dimension {self.dim}, got shape {np.shape(embeddings)}")
        if not np.isfinite(vectors).all():
            raise ValueError("embedding contains NaN or infinity")
        # COSINE is undefined for a zero vector (and the ML service never makes one); no normalisation needed.
        if rows and (np.linalg.norm(vectors, axis=1) < 1e-6).any():
            raise ValueError("embedding is (close to) the zero vector")
        return vectors

    @staticmethod
    def _row(record: FaceRecord, vector: np.ndarray) -> dict[str, Any]:
        row: dict[str, Any] = {
            "row_id": record.row_id,
            "tenant": record.tenant,
            "face_id": record.face_id,
            "subject_id": record.subject_id,
            "object_key": record.object_key,
            "model_id": record.model_id,
            "created_at": int(record.created_at_ms),
        }
        for name, (_, max_len) in SCALAR_FIELDS.items():
            if max_len is None:
                continue
            value = row[name]
            # object_key "" is a face stored without its image (FACEAUTH_STORE_IMAGES=false).
            if not isinstance(value, str) or (not value and name != "object_key"):
                raise ValueError(f"{name} must be a non-empty string")
            if len(value.encode()) > max_len:
                raise ValueError(f"{name} is longer than {max_len} bytes")
        row[VECTOR_FIELD] = vector
        return row

    def _scan(
        self,
        client: Any,
        expr: str,
        fields: list[str],
        *,
        max_rows: int | None,
        each: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every row matching `expr`, batch by batch (Milvus caps one query's window at 16384 rows). With `each`,
        batches go to it and are not kept. More than `max_rows` rows raise TooManyRows."""
        iterator = client.query_iterator(
            self.collection,
            batch_size=_SCAN_BATCH,
            filter=expr,
            output_fields=fields,
            timeout=self.timeout,
            **self._read_consistency(client),
        )
        rows: list[dict[str, Any]] = []
        seen = 0
        try:
            while batch := iterator.next():
                seen += len(batch)
                if max_rows is not None and seen > max_rows:
                    raise TooManyRows(max_rows)
                if each is None:
                    rows.extend(batch)
                else:
                    each(batch)
        finally:
            iterator.close()
        return rows

    def _write(self, client: Any, op: str, **kwargs: Any) -> Any:
        method = getattr(client, op)
        if self._write_lock is None:
            result = method(self.collection, timeout=self.timeout, **kwargs)
        else:
            with self._write_lock:
                result = method(self.collection, timeout=self.timeout, **kwargs)
        self._note_write(client)
        return result

    # -- internals: read-your-writes ------------------------------------------------------------------------
    #
    # Session consistency is done here rather than by pymilvus: pymilvus remembers the timestamp each write
    # returns, but Milvus 2.3 returns 0 for deletes, so a "Session" read after a delete still saw the deleted
    # row. Instead, after each write we ask Milvus for a fresh timestamp (AllocTimestamp; the write is complete,
    # so it is older) and reads pass it as their guarantee timestamp ("Customized" consistency, which Milvus
    # treats like Session with our timestamp). One timestamp per collection and process, like pymilvus's.

    def _note_write(self, client: Any) -> None:
        if self.consistency_level == "Strong" or not self._alloc_supported:
            return
        try:
            ts = self._alloc_timestamp(client)
        except Exception as exc:  # the write itself succeeded: make the next read find out instead
            log.debug("no timestamp after a Milvus write (%s); the next read asks again", _describe(exc))
            ts = _UNKNOWN_TS
        with _SESSION_LOCK:
            if ts == _UNKNOWN_TS:
                _SESSION_TS[self._session_key] = _UNKNOWN_TS
            elif ts > 0:
                _SESSION_TS[self._session_key] = max(_SESSION_TS.get(self._session_key, 0), ts)

    def _alloc_timestamp(self, client: Any) -> int:
        """A timestamp from the server's clock, or 0 when it cannot give one (then reads are Strong)."""
        ts = 0
        alloc = getattr(client._get_connection(), "alloc_timestamp", None)  # not on MilvusClient's public API
        if alloc is not None:
            ts = int(alloc(timeout=self.timeout) or 0)  # pymilvus gives 0 when the server lacks the call
        if ts <= 0 and self._alloc_supported:
            self._alloc_supported = False
            log.warning("Milvus at %s cannot allocate timestamps: reads use Strong consistency", self.uri)
        return ts

    def _read_consistency(self, client: Any) -> dict[str, Any]:
        if self.consistency_level == "Strong" or not self._alloc_supported:
            return {"consistency_level": "Strong"}
        with _SESSION_LOCK:
            ts = _SESSION_TS.get(self._session_key, 0)
        if ts == _UNKNOWN_TS:
            ts = self._alloc_timestamp(client)
            if ts <= 0:
                return {"consistency_level": "Strong"}
            with _SESSION_LOCK:
                _SESSION_TS[self._session_key] = max(_SESSION_TS.get(self._session_key, 0), ts)
        # No write of ours yet: nothing to wait for (1 = "any time", what pymilvus sends in that case too).
        return {"consistency_level": "Customized", "guarantee_timestamp": max(ts, 1)}

    def _search_params(self, request_limit: int) -> dict[str, Any]:
        kind = self.index_type or self.requested_index_type
        if kind == "HNSW":
            # Milvus rejects ef < topk.
            return {"ef": max(self.search_ef, request_limit)}
        if kind in ("IVF_FLAT", "IVF_SQ8"):
            return {"nprobe": self.ivf_nprobe}
        if kind == "SCANN":
            # reorder_k: candidates re-scored on the raw vectors after the 4-bit PQ scan; Milvus wants >= topk.
            return {"nprobe": self.ivf_nprobe, "reorder_k": max(self.scann_reorder_k, request_limit)}
        return {}

    # -- internals: calls -----------------------------------------------------------------------------------

    async def _run(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        rpcs: int = 1,
        timeout: float | None = None,
        retry_not_loaded: bool = True,
    ) -> T:
        """Run `fn(client)` in the pool. Maps every failure of Milvus to StorageUnavailable("vectors", ...)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="milvus")
        per_call = timeout or self.timeout
        loop = asyncio.get_running_loop()
        # `what` is always a literal operation name (open, insert, search, ...): a bounded metrics label.
        with timed_store_call(self.observer, "milvus", what, (StorageUnavailable,)):
            # In the caller's context: what the call logs carries the request id.
            context = contextvars.copy_context()
            future = loop.run_in_executor(self._pool, context.run, self._call, what, fn, per_call, retry_not_loaded)
            # pymilvus honours its timeouts, but a retry may start just before one expires: this is the backstop.
            try:
                return await asyncio.wait_for(future, timeout=2 * per_call * rpcs + 2.0)
            except TimeoutError:
                self._drop_client(None)
                raise StorageUnavailable(
                    "vectors", f"{what}: no answer within {2 * per_call * rpcs + 2.0:.0f} s"
                ) from None
            except _Unavailable as exc:
                raise StorageUnavailable("vectors", f"{what}: {exc.detail}") from None

    def _call(self, what: str, fn: Callable[[Any], T], timeout: float, retry_not_loaded: bool) -> T:
        errors = _pymilvus_errors()
        client = None
        try:
            client = self._get_client(timeout)
            if not self._opened and what != "open" and self.index_type is None:
                # Never opened (e.g. Milvus was down at start-up): make sure the collection is there first.
                self._open_sync(client)
            try:
                return fn(client)
            except errors as exc:
                if not (retry_not_loaded and _mentions(exc, _NOT_LOADED_MARKERS)):
                    raise
                # A restarted server may come back with the collection released: load it and try once more.
                log.warning("Milvus collection %s is not loaded (%s); loading it", self.collection, _describe(exc))
                client.load_collection(self.collection, timeout=timeout)
                return fn(client)
        except _Unavailable:
            raise
        except (*errors, ConnectionError, TimeoutError, concurrent.futures.TimeoutError) as exc:
            if _is_connection_error(exc):
                self._drop_client(client)
            raise _Unavailable(_describe(exc)) from None

    def _get_client(self, timeout: float) -> Any:
        with self._client_lock:
            if self._client is not None:
                return self._client
            # While Milvus is down, calls queued behind a failed connect fail at once instead of each waiting
            # out its own connect timeout.
            if time.monotonic() - self._connect_failed_at < _RECONNECT_PAUSE:
                raise _Unavailable(f"cannot connect to {self.uri}: {self._connect_error}")
            from pymilvus import MilvusClient

            try:
                # A dedicated channel: ours to rebuild or close without touching other clients of this process.
                if self.uri.endswith(".db"):  # embedded: its folder may not exist yet (e.g. images on S3)
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                with _EMBEDDED_START if self.uri.endswith(".db") else contextlib.nullcontext():
                    self._client = MilvusClient(
                        uri=self.uri, token=self.token, db_name=self.db_name, timeout=timeout, dedicated=True
                    )
            except Exception as exc:
                self._connect_failed_at, self._connect_error = time.monotonic(), _describe(exc)
                raise
            return self._client

    def _drop_client(self, client: Any) -> None:
        """Forget a client whose connection broke (None: whichever is current); the next call makes a new one."""
        with self._client_lock:
            if self._client is None or (client is not None and client is not self._client):
                return
            client, self._client = self._client, None
        try:
            client.close()
        except Exception as exc:
            log.debug("closing a broken Milvus client: %s", exc)

    # -- internals: open ------------------------------------------------------------------------------------

    def _open_sync(self, client: Any) -> None:
        # pymilvus imports scipy.sparse lazily inside the first search (~0.2-1 s, with concurrent first searches
        # racing into the import): pay for it here, at start-up, instead of in a user's request.
        with contextlib.suppress(ImportError):
            importlib.import_module("scipy.sparse")
        self.server_version = str(client.get_server_version(timeout=self.timeout))
        if self.server_version.startswith("milvus_lite") and self._write_lock is None:
            self._write_lock = threading.Lock()
            self._alloc_supported = False
        self._finish_interrupted_migration(client)
        if not client.has_collection(self.collection, timeout=self.timeout):
            self._create_collection(client, self.collection)
        described = client.describe_collection(self.collection, timeout=self.timeout)
        if _lacks_only_subjects(described):
            self._migrate_to_subjects(client)
            described = client.describe_collection(self.collection, timeout=self.timeout)
        self._check_schema(described)
        self._ensure_index(client)
        self._ensure_filter_indexes(client)
        self._load(client)

    # -- internals: the one schema migration (collections made before subjects had no subject_id) -------------
    #
    # Milvus cannot add a field to a collection, so the rows are copied into a new collection (subject_id = the
    # face id, which is what a face without a subject means), which then takes the old one's name. Each step can
    # be interrupted: the copy is made under a temporary name, and the next start finishes or restarts it.

    @property
    def _migration_names(self) -> tuple[str, str]:
        return f"{self.collection}__migrating", f"{self.collection}__pre_subjects"

    def _finish_interrupted_migration(self, client: Any) -> None:
        copy, old = self._migration_names
        has = client.has_collection
        if (
            not has(self.collection, timeout=self.timeout)
            and has(copy, timeout=self.timeout)
            and has(old, timeout=self.timeout)
        ):
            log.warning("finishing the interrupted migration of Milvus collection %s", self.collection)
            client.rename_collection(copy, self.collection, timeout=self.timeout)
        if has(self.collection, timeout=self.timeout) and has(old, timeout=self.timeout):
            client.drop_collection(old, timeout=self.timeout)

    def _migrate_to_subjects(self, client: Any) -> None:
        copy, old = self._migration_names
        log.warning("Milvus collection %s predates subjects: copying its rows into the new schema", self.collection)
        if client.has_collection(copy, timeout=self.timeout):
            client.drop_collection(copy, timeout=self.timeout)  # a copy that was interrupted: start again
        self._create_collection(client, copy)
        client.load_collection(self.collection, timeout=self.timeout)
        fields = [name for name in _OUTPUT_FIELDS if name != "subject_id"] + [VECTOR_FIELD]
        iterator = client.query_iterator(
            self.collection, batch_size=_SCAN_BATCH, filter="", output_fields=fields, consistency_level="Strong"
        )
        copied = 0
        try:
            while batch := iterator.next():
                rows = [{**{f: row[f] for f in fields}, "subject_id": row["face_id"]} for row in batch]
                client.insert(copy, rows, timeout=self.timeout)
                copied += len(rows)
        finally:
            iterator.close()
        counted = client.query(
            self.collection, filter="", output_fields=["count(*)"], timeout=self.timeout, consistency_level="Strong"
        )
        expected = int(counted[0]["count(*)"]) if counted else 0
        if copied != expected:
            raise _Unavailable(f"migration copied {copied} of {expected} rows; it is retried at the next start")
        client.release_collection(self.collection, timeout=self.timeout)
        client.rename_collection(self.collection, old, timeout=self.timeout)
        client.rename_collection(copy, self.collection, timeout=self.timeout)
        client.drop_collection(old, timeout=self.timeout)
        log.warning("migrated %d rows of Milvus collection %s", copied, self.collection)

    def _create_collection(self, client: Any, name: str) -> None:
        from pymilvus import DataType
        from pymilvus.exceptions import MilvusException

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="faceauth face vectors")
        for field, (dtype, max_len) in SCALAR_FIELDS.items():
            extra: dict[str, Any] = {"max_length": max_len} if max_len else {}
            schema.add_field(
                field,
                getattr(DataType, dtype),
                is_primary=field == "row_id",
                is_partition_key=field == "tenant",
                **extra,
            )
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        try:
            client.create_collection(
                name, schema=schema, consistency_level=self.consistency_level, timeout=self.timeout
            )
            log.info("created Milvus collection %s (dim %d)", name, self.dim)
        except MilvusException:
            # Another process may be creating it at this moment (milvus-lite says "File exists" before the
            # collection is listed): wait a little for it to appear; its schema is checked next.
            deadline = time.monotonic() + 5.0
            while not client.has_collection(name, timeout=self.timeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _check_schema(self, described: dict[str, Any]) -> None:
        from pymilvus import DataType

        fields = {f["name"]: f for f in described.get("fields", [])}
        problems: list[str] = []
        expected = {name: dtype for name, (dtype, _) in SCALAR_FIELDS.items()} | {VECTOR_FIELD: "FLOAT_VECTOR"}
        for name, dtype in expected.items():
            field = fields.get(name)
            if field is None:
                problems.append(f"field {name!r} is missing")
                continue
            got = field.get("type")
            if got != getattr(DataType, dtype) and getattr(got, "name", got) != dtype:
                problems.append(f"field {name!r} is {getattr(got, 'name', got)}, expected {dtype}")
        if extra := sorted(set(fields) - set(expected)):
            problems.append(f"unexpected field(s) {', '.join(extra)}")
        if "row_id" in fields and not fields["row_id"].get("is_primary"):
            problems.append("row_id is not the primary key")
        if "tenant" in fields and not fields["tenant"].get("is_partition_key"):
            problems.append("tenant is not the partition key")
        if VECTOR_FIELD in fields:
            dim = int(fields[VECTOR_FIELD].get("params", {}).get("dim", 0))
            if dim != self.dim:
                problems.append(f"embedding dimension is {dim}, expected {self.dim}")
        if problems:
            raise IncompatibleCollection(
                f"Milvus collection {self.collection!r} exists with an incompatible schema: {'; '.join(problems)}. "
                "Use another collection (FACEAUTH_MILVUS_COLLECTION) or migrate the data."
            )

    def _index_params(self, client: Any, index_type: str) -> Any:
        params: dict[str, Any] = {}
        if index_type == "HNSW":
            params = {"M": self.hnsw_m, "efConstruction": self.hnsw_ef_construction}
        elif index_type in ("IVF_FLAT", "IVF_SQ8"):
            params = {"nlist": self.ivf_nlist}
        elif index_type == "SCANN":
            # Keeps the raw vectors for the reorder step by default (Milvus 2.3 rejects an explicit with_raw_data).
            params = {"nlist": self.ivf_nlist}
        index_params = client.prepare_index_params()
        index_params.add_index(VECTOR_FIELD, index_type=index_type, metric_type=METRIC, params=params)
        return index_params

    def _describe_index(self, client: Any) -> dict[str, Any] | None:
        from pymilvus.exceptions import MilvusException

        try:
            names = client.list_indexes(self.collection, field_name=VECTOR_FIELD, timeout=self.timeout)
            if not names:
                return None
            return client.describe_index(self.collection, names[0], timeout=self.timeout) or None
        except MilvusException as exc:
            if exc.code == 700 or "index not found" in _describe(exc).lower():  # INDEX_NOT_FOUND
                return None
            raise

    def _ensure_index(self, client: Any) -> None:
        from pymilvus.exceptions import MilvusException

        info = self._describe_index(client)
        if info is None:
            try:
                self._create_index(client, self.requested_index_type)
            except MilvusException as exc:
                # Another process may have won the race; otherwise the server may not know this index type.
                info = self._describe_index(client)
                if info is None:
                    if _is_connection_error(exc) or self.requested_index_type == "FLAT":
                        raise
                    self._fall_back_to_flat(client, exc)
                    return
            info = info or self._describe_index(client) or {}
        metric = str(info.get("metric_type", METRIC)).upper()
        if metric != METRIC:
            raise IncompatibleCollection(
                f"Milvus collection {self.collection!r} has a {metric} index on {VECTOR_FIELD}, expected {METRIC}"
            )
        self.index_type = str(info.get("index_type", self.requested_index_type)).upper()
        if self.index_type != self.requested_index_type:
            log.warning(
                "Milvus collection %s already has a %s index (FACEAUTH_MILVUS_INDEX_TYPE=%s); keeping it",
                self.collection,
                self.index_type,
                self.requested_index_type,
            )

    def _ensure_filter_indexes(self, client: Any) -> None:
        """Trie indexes on the fields every search filters on (servers only).

        Milvus evaluates a search's filter on every row of the segments it searches, also on a tenant's own
        partition: without an index, `tenant == .. and model_id == ..` compares strings and costs about 5 ms per
        search at a million rows (Milvus 2.3.5, one core), more than the vector search; a Trie index cuts that to
        about 2 ms. Best effort: a search is only slower without them.
        """
        from pymilvus.exceptions import MilvusException

        if str(self.server_version).startswith("milvus_lite"):
            return  # milvus-lite filters in Python whatever the indexes
        for field in _FILTER_INDEXED_FIELDS:
            try:
                if client.list_indexes(self.collection, field_name=field, timeout=self.timeout):
                    continue
                params = client.prepare_index_params()
                params.add_index(field, index_type="Trie", index_name=f"{field}_trie")
                client.create_index(self.collection, params, timeout=self.timeout, sync=False)
            except MilvusException as exc:
                if _is_connection_error(exc):
                    raise
                log.warning("no Trie index on %s.%s (%s); searches filter it by scan", self.collection, field, exc)

    def _create_index(self, client: Any, index_type: str) -> None:
        # sync=False: do not poll until the (empty) index is "built"; load_collection waits for what matters.
        client.create_index(self.collection, self._index_params(client, index_type), timeout=self.timeout, sync=False)
        self.index_type = index_type

    def _fall_back_to_flat(self, client: Any, exc: BaseException) -> None:
        log.warning(
            "Milvus at %s cannot use a %s index (%s); falling back to FLAT (exact search, fine for small collections)",
            self.uri,
            self.index_type or self.requested_index_type,
            _describe(exc),
        )
        self._create_index(client, "FLAT")

    def _load(self, client: Any) -> None:
        from pymilvus.exceptions import MilvusException

        try:
            client.load_collection(self.collection, timeout=self.timeout)
        except MilvusException as exc:
            # milvus-lite accepts any index type at create_index and builds it here, at load: without faiss, HNSW
            # and IVF fail now. Replace the index with FLAT rather than refusing to start.
            if self.index_type == "FLAT" or _is_connection_error(exc) or not _mentions(exc, _UNSUPPORTED_INDEX_MARKERS):
                raise
            client.release_collection(self.collection, timeout=self.timeout)
            client.drop_index(self.collection, VECTOR_FIELD, timeout=self.timeout)
            self._fall_back_to_flat(client, exc)
            client.load_collection(self.collection, timeout=self.timeout)


class _RowScan:
    """One pass of a query iterator over the collection, and the rows it fetched beyond the page last taken."""

    def __init__(self, client: Any, iterator: Any) -> None:
        self.client = client
        self.iterator = iterator
        self.pending: list[dict[str, Any]] = []
        self.exhausted = False

    def take(self, limit: int, *, max_seconds: float) -> list[dict[str, Any]]:
        """The next `limit` rows ([] only at the end). Milvus 2.3 answers an iterator a few rows at a time, so a
        page gathers several batches, within `max_seconds` (then it is shorter, never empty)."""
        started = time.monotonic()
        while len(self.pending) < limit and not self.exhausted and time.monotonic() - started < max_seconds:
            batch = self.iterator.next()
            if batch:
                self.pending.extend(batch)
            else:
                self.exhausted = True
        rows, self.pending = self.pending[:limit], self.pending[limit:]
        return rows

    def close(self) -> None:
        with contextlib.suppress(Exception):  # releases a client-side cache; nothing worth failing a page for
            self.iterator.close()


class _RowScans:
    """Passes of scan_rows between two pages, by the row_id their last page ended with. A pass that is never
    continued is closed once newer ones push it out."""

    _KEEP = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parked: dict[str, _RowScan] = {}

    def resume(self, client: Any, after: str | None) -> _RowScan | None:
        if after is None:
            return None
        with self._lock:
            scan = self._parked.pop(after, None)
        if scan is not None and scan.client is not client:
            scan.close()  # made on a connection that has been replaced since: start again from `after`
            return None
        return scan

    def park(self, after: str, scan: _RowScan) -> None:
        with self._lock:
            old = self._parked.pop(after, None)
            self._parked[after] = scan
            evicted = [self._parked.pop(k) for k in list(self._parked)[: -self._KEEP]]
        for stale in [old, *evicted]:
            if stale is not None and stale is not scan:
                stale.close()

    def close_all(self) -> None:
        with self._lock:
            scans, self._parked = list(self._parked.values()), {}
        for scan in scans:
            scan.close()


def _record(row: dict[str, Any]) -> FaceRecord:
    return FaceRecord(
        row_id=str(row["row_id"]),
        tenant=str(row["tenant"]),
        face_id=str(row["face_id"]),
        object_key=str(row["object_key"]),
        model_id=str(row["model_id"]),
        created_at_ms=int(row["created_at"]),
        subject_id=str(row["subject_id"]),
    )


def _lacks_only_subjects(described: dict[str, Any]) -> bool:
    """The collection has exactly the fields of the schema before subjects were added."""
    names = {f["name"] for f in described.get("fields", [])}
    return names == (set(SCALAR_FIELDS) - {"subject_id"}) | {VECTOR_FIELD}


def _newest_first(records: list[FaceRecord]) -> list[FaceRecord]:
    return sorted(records, key=lambda r: (r.created_at_ms, r.row_id), reverse=True)


def open_face_index(settings: APISettings, model_dim: int | None = None) -> MilvusFaceIndex:
    """The index for these settings (not connected yet: call `await index.open()`).

    `model_dim`, when the embedding model's dimension is known, wins over FACEAUTH_MILVUS_EMBEDDING_DIM: the
    collection has to hold the model's vectors.
    """
    dim = model_dim if model_dim is not None else settings.milvus_embedding_dim
    if model_dim is not None and model_dim != settings.milvus_embedding_dim:
        log.warning(
            "the embedding model makes %d-d vectors but FACEAUTH_MILVUS_EMBEDDING_DIM=%d; using %d",
            model_dim,
            settings.milvus_embedding_dim,
            model_dim,
        )
    return MilvusFaceIndex(
        settings.resolved_milvus_uri,
        collection=settings.milvus_collection,
        dim=dim,
        token=settings.milvus_token,
        db_name=settings.milvus_db_name,
        index_type=settings.milvus_index_type,
        hnsw_m=settings.milvus_hnsw_m,
        hnsw_ef_construction=settings.milvus_hnsw_ef_construction,
        search_ef=settings.milvus_search_ef,
        ivf_nlist=settings.milvus_ivf_nlist,
        ivf_nprobe=settings.milvus_ivf_nprobe,
        scann_reorder_k=settings.milvus_scann_reorder_k,
        consistency_level=settings.milvus_consistency_level,
        timeout=settings.milvus_timeout_seconds,
        max_faces_per_subject=settings.max_faces_per_subject,
    )


__all__ = [
    "Exclusion",
    "FaceIndex",
    "FaceRecord",
    "IncompatibleCollection",
    "Match",
    "MilvusFaceIndex",
    "TenantVectors",
    "TooManyRows",
    "open_face_index",
    "quote",
]
