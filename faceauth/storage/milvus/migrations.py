"""The one schema migration: collections made before subjects had no subject_id.

Milvus cannot add a field to a collection, so the rows are copied into a new collection (subject_id = the face
id, which is what a face without a subject means), which then takes the old one's name. Each step can be
interrupted: the copy is made under a temporary name, and the next start finishes or restarts it.
"""

from __future__ import annotations

import logging
from typing import Any

from faceauth.storage.milvus.errors import CallFailed
from faceauth.storage.milvus.scans import SCAN_BATCH
from faceauth.storage.milvus.schema import OUTPUT_FIELDS, SCALAR_FIELDS, VECTOR_FIELD, CollectionSchema

log = logging.getLogger(__name__)


def _migration_names(collection: str) -> tuple[str, str]:
    return f"{collection}__migrating", f"{collection}__pre_subjects"


def lacks_only_subjects(described: dict[str, Any]) -> bool:
    """The collection has exactly the fields of the schema before subjects were added."""
    names = {f["name"] for f in described.get("fields", [])}
    return names == (set(SCALAR_FIELDS) - {"subject_id"}) | {VECTOR_FIELD}


def finish_interrupted_migration(client: Any, collection: str, *, timeout: float) -> None:
    copy, old = _migration_names(collection)
    has = client.has_collection
    if not has(collection, timeout=timeout) and has(copy, timeout=timeout) and has(old, timeout=timeout):
        log.warning("finishing the interrupted migration of Milvus collection %s", collection)
        client.rename_collection(copy, collection, timeout=timeout)
    if has(collection, timeout=timeout) and has(old, timeout=timeout):
        client.drop_collection(old, timeout=timeout)


def migrate_to_subjects(client: Any, schema: CollectionSchema) -> None:
    collection, timeout = schema.collection, schema.timeout
    copy, old = _migration_names(collection)
    log.warning("Milvus collection %s predates subjects: copying its rows into the new schema", collection)
    if client.has_collection(copy, timeout=timeout):
        client.drop_collection(copy, timeout=timeout)  # a copy that was interrupted: start again
    schema.create_collection(client, copy)
    client.load_collection(collection, timeout=timeout)
    fields = [name for name in OUTPUT_FIELDS if name != "subject_id"] + [VECTOR_FIELD]
    iterator = client.query_iterator(
        collection, batch_size=SCAN_BATCH, filter="", output_fields=fields, consistency_level="Strong"
    )
    copied = 0
    try:
        while batch := iterator.next():
            rows = [{**{f: row[f] for f in fields}, "subject_id": row["face_id"]} for row in batch]
            client.insert(copy, rows, timeout=timeout)
            copied += len(rows)
    finally:
        iterator.close()
    counted = client.query(
        collection, filter="", output_fields=["count(*)"], timeout=timeout, consistency_level="Strong"
    )
    expected = int(counted[0]["count(*)"]) if counted else 0
    if copied != expected:
        raise CallFailed(f"migration copied {copied} of {expected} rows; it is retried at the next start")
    client.release_collection(collection, timeout=timeout)
    client.rename_collection(collection, old, timeout=timeout)
    client.rename_collection(copy, collection, timeout=timeout)
    client.drop_collection(old, timeout=timeout)
    log.warning("migrated %d rows of Milvus collection %s", copied, collection)
