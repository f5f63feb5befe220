"""The collection: its fields, its vector and filter indexes, and how it is created, checked and loaded.

One collection per deployment (`FACEAUTH_MILVUS_COLLECTION`), one row per stored face revision:

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

import logging
import time
from typing import Any

import numpy as np

from faceauth.storage.milvus.errors import UNSUPPORTED_INDEX_MARKERS, describe, is_connection_error, mentions
from faceauth.storage.records import FaceRecord

log = logging.getLogger(__name__)

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
OUTPUT_FIELDS = list(SCALAR_FIELDS)
# Fields every search filters on; Milvus servers get a scalar index on each (see ensure_filter_indexes).
_FILTER_INDEXED_FIELDS = ("tenant", "model_id")


class IncompatibleCollection(RuntimeError):
    """The collection exists with another schema (e.g. another embedding dimension). A configuration problem,
    not an outage: re-trying cannot fix it, so it is not a StorageUnavailable."""


def to_row(record: FaceRecord, vector: np.ndarray) -> dict[str, Any]:
    """The row of `record` to insert; ValueError for a value the schema cannot hold."""
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


def to_record(row: dict[str, Any]) -> FaceRecord:
    return FaceRecord(
        row_id=str(row["row_id"]),
        tenant=str(row["tenant"]),
        face_id=str(row["face_id"]),
        object_key=str(row["object_key"]),
        model_id=str(row["model_id"]),
        created_at_ms=int(row["created_at"]),
        subject_id=str(row["subject_id"]),
    )


class CollectionSchema:
    """Creates or checks the collection and its indexes at open, and loads it.

    `index_type` is what the collection really has once `ensure_index` ran (another process may have created
    it, or a fallback to FLAT happened); None before.
    """

    def __init__(
        self,
        collection: str,
        *,
        dim: int,
        uri: str,
        index_type: str,
        hnsw_m: int,
        hnsw_ef_construction: int,
        search_ef: int,
        ivf_nlist: int,
        ivf_nprobe: int,
        scann_reorder_k: int,
        consistency_level: str,
        timeout: float,
    ) -> None:
        self.collection = collection
        self.dim = dim
        self.uri = uri
        self.requested_index_type = index_type.upper()
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.search_ef = search_ef
        self.ivf_nlist = ivf_nlist
        self.ivf_nprobe = ivf_nprobe
        self.scann_reorder_k = scann_reorder_k
        self.consistency_level = consistency_level
        self.timeout = timeout
        self.index_type: str | None = None

    def create_collection(self, client: Any, name: str) -> None:
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

    def check(self, described: dict[str, Any]) -> None:
        """IncompatibleCollection unless the described collection has exactly our fields."""
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

    # -- the vector index -----------------------------------------------------------------------------------

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
            if exc.code == 700 or "index not found" in describe(exc).lower():  # INDEX_NOT_FOUND
                return None
            raise

    def ensure_index(self, client: Any) -> None:
        from pymilvus.exceptions import MilvusException

        info = self._describe_index(client)
        if info is None:
            try:
                self._create_index(client, self.requested_index_type)
            except MilvusException as exc:
                # Another process may have won the race; otherwise the server may not know this index type.
                info = self._describe_index(client)
                if info is None:
                    if is_connection_error(exc) or self.requested_index_type == "FLAT":
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

    def ensure_filter_indexes(self, client: Any, server_version: str | None) -> None:
        """Trie indexes on the fields every search filters on (servers only).

        Milvus evaluates a search's filter on every row of the segments it searches, also on a tenant's own
        partition: without an index, `tenant == .. and model_id == ..` compares strings and costs about 5 ms per
        search at a million rows (Milvus 2.3.5, one core), more than the vector search; a Trie index cuts that to
        about 2 ms. Best effort: a search is only slower without them.
        """
        from pymilvus.exceptions import MilvusException

        if str(server_version).startswith("milvus_lite"):
            return  # milvus-lite filters in Python whatever the indexes
        for field in _FILTER_INDEXED_FIELDS:
            try:
                if client.list_indexes(self.collection, field_name=field, timeout=self.timeout):
                    continue
                params = client.prepare_index_params()
                params.add_index(field, index_type="Trie", index_name=f"{field}_trie")
                client.create_index(self.collection, params, timeout=self.timeout, sync=False)
            except MilvusException as exc:
                if is_connection_error(exc):
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
            describe(exc),
        )
        self._create_index(client, "FLAT")

    def load(self, client: Any) -> None:
        from pymilvus.exceptions import MilvusException

        try:
            client.load_collection(self.collection, timeout=self.timeout)
        except MilvusException as exc:
            # milvus-lite accepts any index type at create_index and builds it here, at load: without faiss, HNSW
            # and IVF fail now. Replace the index with FLAT rather than refusing to start.
            if self.index_type == "FLAT" or is_connection_error(exc) or not mentions(exc, UNSUPPORTED_INDEX_MARKERS):
                raise
            client.release_collection(self.collection, timeout=self.timeout)
            client.drop_index(self.collection, VECTOR_FIELD, timeout=self.timeout)
            self._fall_back_to_flat(client, exc)
            client.load_collection(self.collection, timeout=self.timeout)

    def search_params(self, request_limit: int) -> dict[str, Any]:
        """The index type's search parameters for a search of `request_limit` rows."""
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
