"""A collection made before subjects is copied into the current schema, rows and all."""

from __future__ import annotations

from tests.aio import async_test
from tests.storage.milvus.conftest import DIM, M1, new_collection_name, record, unit


def _make_legacy_collection(uri: str, name: str, rows: list[dict]) -> None:
    """A collection as the Face API made them before subjects existed (no subject_id field)."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri, timeout=10, dedicated=True)
    try:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row_id", DataType.VARCHAR, max_length=512, is_primary=True)
        schema.add_field("tenant", DataType.VARCHAR, max_length=256, is_partition_key=True)
        for field in ("face_id", "object_key", "model_id"):
            schema.add_field(field, DataType.VARCHAR, max_length=512 if field == "object_key" else 128)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
        client.create_collection(name, schema=schema, timeout=10)
        params = client.prepare_index_params()
        params.add_index("embedding", index_type="FLAT", metric_type="COSINE")
        client.create_index(name, params, timeout=10)
        client.insert(name, rows, timeout=10)
    finally:
        client.close()


@async_test
async def test_a_collection_from_before_subjects_is_migrated_with_its_rows(make_index, milvus_uri, rng):
    name = new_collection_name()
    vectors = {f"f{i}": unit(rng) for i in range(3)}
    rows = []
    for face_id, vector in vectors.items():
        r = record("t", face_id)
        rows.append(
            {
                "row_id": r.row_id,
                "tenant": r.tenant,
                "face_id": r.face_id,
                "object_key": r.object_key,
                "model_id": r.model_id,
                "created_at": r.created_at_ms,
                "embedding": vector.tolist(),
            }
        )
    _make_legacy_collection(milvus_uri, name, rows)

    index = make_index(name)
    await index.open()
    for face_id, vector in vectors.items():
        [row] = await index.find("t", face_id)
        assert row.subject_id == face_id
        [match] = await index.search("t", vector, model_id=M1, limit=1, threshold=0.9)
        assert (match.face_id, match.subject_id) == (face_id, face_id)
    await index.add(record("t", "new", subject_id="s"), unit(rng))
    assert [r.face_id for r in await index.subject_faces("t", "s")] == ["new"]
    # Nothing of the migration is left behind, and opening again changes nothing.
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_uri, timeout=10, dedicated=True)
    try:
        assert [c for c in client.list_collections() if c.startswith(name)] == [name]
    finally:
        client.close()
    again = make_index(name)
    await again.open()
    assert [r.face_id for r in (await again.vectors("t", model_id=M1, max_rows=10)).records] == [
        "f0",
        "f1",
        "f2",
        "new",
    ]
