"""MilvusFaceIndex: the FaceIndex on Milvus (a server, or milvus-lite embedded when the URI is a `.db` path).

The collection's layout is in `schema`; each call runs through `connection`, reads wait for this process's
writes as `consistency` says, and long reads go through `scans`.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from faceauth.kit.metrics import NULL_OBSERVER, StoreObserver, timed_store_call
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.milvus.connection import MilvusConnection
from faceauth.storage.milvus.consistency import SessionConsistency
from faceauth.storage.milvus.errors import CallFailed
from faceauth.storage.milvus.filters import quote, quote_list
from faceauth.storage.milvus.migrations import finish_interrupted_migration, lacks_only_subjects, migrate_to_subjects
from faceauth.storage.milvus.scans import SCAN_BATCH, RowScan, RowScans, scan_all
from faceauth.storage.milvus.schema import METRIC, OUTPUT_FIELDS, VECTOR_FIELD, CollectionSchema, to_record, to_row
from faceauth.storage.records import Exclusion, FaceRecord, GroupBy, Match, TenantVectors

T = TypeVar("T")

# Milvus caps topk (and query windows) at 16384.
MAX_TOPK = 16384
# A face has one revision, two while it is being replaced; more only after failures. Plenty of headroom.
_MAX_REVISIONS = 1024
_DELETE_BATCH = 1000
# Enough distinct foreign model ids for a readiness warning; each one costs one small query.
_MAX_OTHER_MODELS = 32


class MilvusFaceIndex:
    """FaceIndex on Milvus.

    Calls run on a small thread pool of their own (see `connection`). Failures to reach or use Milvus raise
    StorageUnavailable("vectors", ...), and the index recovers by itself when the server returns.

    Read-your-writes without flush: with consistency "Session" (the default) reads wait until this process's
    latest insert or delete is visible, using a server timestamp taken after each write (see `consistency`);
    with "Strong" they wait for every write acknowledged anywhere, at ~200-400 ms per read on Milvus 2.3.
    milvus-lite always reads its latest state.

    Never calls Milvus `upsert` (see `schema`).
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
        self.timeout = timeout
        self.max_faces_per_subject = max_faces_per_subject
        self.server_version: str | None = None
        self._connection = MilvusConnection(
            uri, collection=collection, token=token or "", db_name=db_name, timeout=timeout
        )
        self._schema = CollectionSchema(
            collection,
            dim=dim,
            uri=uri,
            index_type=index_type,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
            search_ef=search_ef,
            ivf_nlist=ivf_nlist,
            ivf_nprobe=ivf_nprobe,
            scann_reorder_k=scann_reorder_k,
            consistency_level=consistency_level,
            timeout=timeout,
        )
        self._consistency = SessionConsistency(uri, db_name, collection, level=consistency_level, timeout=timeout)
        # milvus-lite's engine is not safe for concurrent writes to one collection: serialize ours.
        self._write_lock: threading.Lock | None = None
        self._opened = False
        self._row_scans = RowScans()  # scan_rows: iterators kept between the pages of a pass

    @property
    def index_type(self) -> str | None:
        """The vector index the collection really has (known once opened)."""
        return self._schema.index_type

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        # Creation, index build and load are several calls, each with its own timeout.
        await self._run("open", self._open_sync, rpcs=8, retry_not_loaded=False)
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        self._row_scans.close_all()
        await self._connection.close()

    async def ping(self) -> None:
        def check(client: Any) -> None:
            if not client.has_collection(self.collection, timeout=self._ping_timeout):
                raise CallFailed(f"collection {self.collection!r} does not exist")

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
        rows = [to_row(r, v) for r, v in zip(records, vectors, strict=True)]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            await self._run("insert", lambda c, b=batch: self._write(c, "insert", data=b), rpcs=2)

    async def remove(self, tenant: str, row_ids: list[str]) -> None:
        ids = list(dict.fromkeys(row_ids))  # unique, order kept
        for start in range(0, len(ids), _DELETE_BATCH):
            # The tenant term keeps other tenants' rows out of reach and lets Milvus prune to one partition.
            # Milvus 2.3 resolves such an expression with an internal query at the delete's consistency level,
            # which pymilvus sends as Strong: rows inserted just before are found.
            expr = f"tenant == {quote(tenant)} and row_id in {quote_list(ids[start : start + _DELETE_BATCH])}"
            await self._run("delete", lambda c, e=expr: self._write(c, "delete", filter=e), rpcs=2)

    # -- reads ----------------------------------------------------------------------------------------------

    async def find(self, tenant: str, face_id: str) -> list[FaceRecord]:
        expr = f"tenant == {quote(tenant)} and face_id == {quote(face_id)}"
        rows = await self._run(
            "query",
            lambda c: c.query(
                self.collection,
                filter=expr,
                output_fields=OUTPUT_FIELDS,
                limit=_MAX_REVISIONS,
                timeout=self.timeout,
                **self._consistency.read_params(c),
            ),
        )
        return _newest_first([to_record(r) for r in rows])

    async def rows_of_other_models(self, model_id: str, limit: int) -> list[FaceRecord]:
        """Up to `limit` rows embedded by another model than `model_id` (to re-embed them), any tenant."""
        rows = await self._run(
            "query",
            lambda c: c.query(
                self.collection,
                filter=f"model_id != {quote(model_id)}",
                output_fields=OUTPUT_FIELDS,
                limit=limit,
                timeout=self.timeout,
                **self._consistency.read_params(c),
            ),
        )
        return [to_record(r) for r in rows]

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
                search_params={"metric_type": METRIC, "params": self._schema.search_params(request_limit)},
                anns_field=VECTOR_FIELD,
                timeout=self.timeout,
                **self._consistency.read_params(client),
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
        rows = await self._run("query", lambda c: self._scan(c, expr, OUTPUT_FIELDS, max_rows=None))
        return _newest_first([to_record(r) for r in rows])

    async def list_subjects(self, tenant: str, *, after: str | None, limit: int) -> list[list[FaceRecord]]:
        """Milvus cannot sort a query, so this scans the tenant's rows after the cursor and keeps the `limit`
        smallest subject ids: one pass over the tenant per page (an admin listing, not a hot path)."""
        expr = f"tenant == {quote(tenant)}"
        if after is not None:
            expr += f" and subject_id > {quote(after)}"
        kept: dict[str, list[FaceRecord]] = {}

        def keep(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                record = to_record(row)
                if record.subject_id in kept or len(kept) < limit:
                    kept.setdefault(record.subject_id, []).append(record)
                    continue
                largest = max(kept)
                if record.subject_id < largest:
                    del kept[largest]
                    kept[record.subject_id] = [record]

        await self._run("query", lambda c: self._scan(c, expr, OUTPUT_FIELDS, max_rows=None, each=keep))
        return [_newest_first(kept[subject]) for subject in sorted(kept)]

    async def vectors(self, tenant: str, *, model_id: str, face_id: str | None = None, max_rows: int) -> TenantVectors:
        expr = f"tenant == {quote(tenant)} and model_id == {quote(model_id)}"
        if face_id is not None:
            expr += f" and face_id == {quote(face_id)}"
        fields = [*OUTPUT_FIELDS, VECTOR_FIELD]
        rows = await self._run("query", lambda c: self._scan(c, expr, fields, max_rows=max_rows), rpcs=4)
        # Keep one row (the newest revision) per face.
        newest: dict[str, tuple[FaceRecord, Any]] = {}
        for row in rows:
            record = to_record(row)
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
                **self._consistency.read_params(client),
            )
            count = int(rows[0]["count(*)"]) if rows else 0
            # Always delete: the count may lag behind writes (eventual consistency) and say 0 while rows exist.
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
                expr += f" and model_id not in {quote_list(found)}"
            return client.query(
                self.collection,
                filter=expr,
                output_fields=["model_id"],
                limit=1,
                timeout=self.timeout,
                **self._consistency.read_params(client),
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

    async def scan_rows(self, *, after: str | None = None, limit: int = SCAN_BATCH) -> list[FaceRecord]:
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
                    batch_size=SCAN_BATCH,
                    filter=expr,
                    output_fields=OUTPUT_FIELDS,
                    timeout=self.timeout,
                    **self._consistency.read_params(client),
                )
                scan = RowScan(client, iterator)
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

        return [to_record(r) for r in await self._run("scan", page, rpcs=4)]

    # -- internals ----------------------------------------------------------------------------------------------

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

    def _write(self, client: Any, op: str, **kwargs: Any) -> Any:
        method = getattr(client, op)
        if self._write_lock is None:
            result = method(self.collection, timeout=self.timeout, **kwargs)
        else:
            with self._write_lock:
                result = method(self.collection, timeout=self.timeout, **kwargs)
        self._consistency.note_write(client)
        return result

    def _scan(
        self,
        client: Any,
        expr: str,
        fields: list[str],
        *,
        max_rows: int | None,
        each: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        consistency = self._consistency.read_params(client)
        return scan_all(
            client,
            self.collection,
            expr,
            fields,
            timeout=self.timeout,
            consistency=consistency,
            max_rows=max_rows,
            each=each,
        )

    async def _run(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        rpcs: int = 1,
        timeout: float | None = None,
        retry_not_loaded: bool = True,
    ) -> T:
        """Run `fn(client)` on the connection's pool, timed for the metrics."""
        # `what` is always a literal operation name (open, insert, search, ...): a bounded metrics label.
        with timed_store_call(self.observer, "milvus", what, (StorageUnavailable,)):
            return await self._connection.run(
                what,
                fn,
                rpcs=rpcs,
                timeout=timeout,
                retry_not_loaded=retry_not_loaded,
                before=None if what == "open" else self._open_if_never_opened,
            )

    def _open_if_never_opened(self, client: Any) -> None:
        if not self._opened and self.index_type is None:
            # Never opened (e.g. Milvus was down at start-up): make sure the collection is there first.
            self._open_sync(client)

    def _open_sync(self, client: Any) -> None:
        # pymilvus imports scipy.sparse lazily inside the first search (~0.2-1 s, with concurrent first searches
        # racing into the import): pay for it here, at start-up, instead of in a user's request.
        with contextlib.suppress(ImportError):
            importlib.import_module("scipy.sparse")
        self.server_version = str(client.get_server_version(timeout=self.timeout))
        if self.server_version.startswith("milvus_lite") and self._write_lock is None:
            self._write_lock = threading.Lock()
            self._consistency.alloc_supported = False
        finish_interrupted_migration(client, self.collection, timeout=self.timeout)
        if not client.has_collection(self.collection, timeout=self.timeout):
            self._schema.create_collection(client, self.collection)
        described = client.describe_collection(self.collection, timeout=self.timeout)
        if lacks_only_subjects(described):
            migrate_to_subjects(client, self._schema)
            described = client.describe_collection(self.collection, timeout=self.timeout)
        self._schema.check(described)
        self._schema.ensure_index(client)
        self._schema.ensure_filter_indexes(client, self.server_version)
        self._schema.load(client)


def _as_rows(embedding: np.ndarray) -> np.ndarray:
    """One embedding as a (1, dim) matrix; a matrix as is (checked by the caller)."""
    array = np.asarray(embedding)
    return array[None, :] if array.ndim == 1 else array


def _newest_first(records: list[FaceRecord]) -> list[FaceRecord]:
    return sorted(records, key=lambda r: (r.created_at_ms, r.row_id), reverse=True)
