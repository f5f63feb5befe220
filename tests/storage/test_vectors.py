"""MilvusFaceIndex against real Milvus: milvus-lite embedded, the milvus-lite gRPC server and Milvus 2.3.5.

Nothing is flushed anywhere: every read below must see the writes before it (read-your-writes).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import faceauth.storage.vectors as vectors_module
from bench.servers.milvus import MilvusLiteServer
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.vectors import (
    Exclusion,
    FaceRecord,
    IncompatibleCollection,
    MilvusFaceIndex,
    TooManyRows,
    open_face_index,
    quote,
)
from tests.aio import async_test
from tests.storage.conftest import index_settings, new_collection_name

DIM = 512
M1, M2 = "buffalo_s/w600k_mbf", "buffalo_l/w600k_r50"


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def at_cosine(v: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine similarity to unit vector `v` is exactly `cosine`."""
    u = unit(rng)
    u = u - float(u @ v) * v
    u /= np.linalg.norm(u)
    return (cosine * v + np.sqrt(1.0 - cosine**2) * u).astype(np.float32)


_clock = [1_732_412_345_000]


def record(tenant: str, face_id: str, model_id: str = M1, subject_id: str = "") -> FaceRecord:
    _clock[0] += 1  # strictly increasing, so "newest first" is well defined
    key = f"{tenant}/{face_id}/{_clock[0]:016d}-{uuid.uuid4().hex[:8]}"
    return FaceRecord(key, tenant, face_id, key, model_id, _clock[0], subject_id)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- basic rows -------------------------------------------------------------------------------------------------


@async_test
async def test_add_then_find_gives_every_revision_newest_first(face_index: MilvusFaceIndex, rng):
    assert await face_index.find("acme", "emp_001") == []
    first, second = record("acme", "emp_001"), record("acme", "emp_001")
    await face_index.add(first, unit(rng))
    await face_index.add(second, unit(rng))
    await face_index.add(record("acme", "emp_002"), unit(rng))

    assert await face_index.find("acme", "emp_001") == [second, first]
    assert await face_index.count() == 3


@async_test
async def test_search_returns_the_nearest_face_with_its_cosine_score(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    await face_index.add(record("acme", "alice"), v)
    await face_index.add(record("acme", "bob"), at_cosine(v, 0.2, rng))

    matches = await face_index.search("acme", at_cosine(v, 0.9, rng), model_id=M1, limit=5, threshold=0.0)
    assert matches[0].face_id == "alice"
    assert matches[0].score == pytest.approx(0.9, abs=1e-3)


@async_test
async def test_tenants_are_independent(face_index: MilvusFaceIndex, rng):
    va, vb = unit(rng), unit(rng)
    ra, rb = record("tenant-a", "emp_1"), record("tenant-b", "emp_1")  # same face id in two tenants
    await face_index.add(ra, va)
    await face_index.add(rb, vb)
    await face_index.add(record("tenant-a", "emp_2"), at_cosine(va, 0.8, rng))

    assert await face_index.find("tenant-a", "emp_1") == [ra]
    assert await face_index.find("tenant-b", "emp_1") == [rb]
    assert await face_index.find("tenant-b", "emp_2") == []
    # Searching tenant B with tenant A's exact vector finds only B's own row (and its weak score).
    matches = await face_index.search("tenant-b", va, model_id=M1, limit=10, threshold=-1.0)
    assert [m.face_id for m in matches] == ["emp_1"]
    assert matches[0].score == pytest.approx(float(va @ vb), abs=1e-3)
    assert await face_index.search("tenant-c", va, model_id=M1, limit=10, threshold=-1.0) == []
    # A row id of tenant A named in a removal for tenant B is not touched.
    await face_index.remove("tenant-b", [ra.row_id])
    assert await face_index.find("tenant-a", "emp_1") == [ra]


@async_test
async def test_search_compares_only_vectors_of_the_same_model(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    await face_index.add(record("acme", "old", model_id=M2), v)
    await face_index.add(record("acme", "new", model_id=M1), at_cosine(v, 0.5, rng))

    assert [m.face_id for m in await face_index.search("acme", v, model_id=M1, limit=5, threshold=0.0)] == ["new"]
    assert [m.face_id for m in await face_index.search("acme", v, model_id=M2, limit=5, threshold=0.0)] == ["old"]
    assert await face_index.search("acme", v, model_id="other", limit=5, threshold=-1.0) == []


@async_test
async def test_other_model_ids_lists_what_the_current_model_cannot_search(face_index: MilvusFaceIndex, rng):
    assert await face_index.other_model_ids(M1) == []
    for i in range(3):
        await face_index.add(record("acme", f"e{i}", model_id=M1), unit(rng))
    assert await face_index.other_model_ids(M1) == []
    await face_index.add(record("acme", "x", model_id=M2), unit(rng))
    await face_index.add(record("beta", "y", model_id='odd"model\\id'), unit(rng))
    assert await face_index.other_model_ids(M1) == sorted([M2, 'odd"model\\id'])
    assert await face_index.other_model_ids(M2) == sorted([M1, 'odd"model\\id'])


@async_test
async def test_threshold_drops_weaker_matches(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    for face_id, cosine in [("c90", 0.9), ("c60", 0.6), ("c30", 0.3)]:
        await face_index.add(record("acme", face_id), at_cosine(v, cosine, rng))

    found = await face_index.search("acme", v, model_id=M1, limit=10, threshold=0.5)
    assert [m.face_id for m in found] == ["c90", "c60"]
    assert all(m.score >= 0.5 for m in found)
    assert await face_index.search("acme", v, model_id=M1, limit=10, threshold=0.95) == []


@async_test
async def test_limit_keeps_the_best_matches_best_first(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    cosines = [0.15, 0.95, 0.55, 0.75, 0.35, 0.85, 0.25, 0.65, 0.45]
    for i, cosine in enumerate(cosines):
        await face_index.add(record("acme", f"f{i}"), at_cosine(v, cosine, rng))

    top3 = await face_index.search("acme", v, model_id=M1, limit=3, threshold=0.0)
    assert [round(m.score, 2) for m in top3] == [0.95, 0.85, 0.75]
    everything = await face_index.search("acme", v, model_id=M1, limit=100, threshold=0.0)
    assert [m.score for m in everything] == sorted((m.score for m in everything), reverse=True)
    assert len(everything) == len(cosines)
    assert await face_index.search("acme", v, model_id=M1, limit=0, threshold=0.0) == []


@async_test
async def test_two_revisions_of_a_face_count_once_with_the_better_score(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    await face_index.add(record("acme", "twice"), at_cosine(v, 0.7, rng))
    await face_index.add(record("acme", "twice"), at_cosine(v, 0.9, rng))
    await face_index.add(record("acme", "other"), at_cosine(v, 0.8, rng))

    found = await face_index.search("acme", v, model_id=M1, limit=2, threshold=0.0)
    assert [(m.face_id, round(m.score, 2)) for m in found] == [("twice", 0.9), ("other", 0.8)]


@async_test
async def test_remove_deletes_exactly_the_named_rows(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    keep, gone1, gone2 = record("acme", "f"), record("acme", "f"), record("acme", "g")
    for r in (keep, gone1, gone2):
        await face_index.add(r, v)

    await face_index.remove("acme", [gone1.row_id, gone2.row_id, "acme/never/existed"])
    assert await face_index.find("acme", "f") == [keep]
    assert await face_index.find("acme", "g") == []
    assert [m.face_id for m in await face_index.search("acme", v, model_id=M1, limit=5, threshold=0.0)] == ["f"]
    await face_index.remove("acme", [])  # nothing to do, not an error
    await face_index.remove("acme", [gone1.row_id])  # already gone, not an error
    assert await face_index.count() == 1


@async_test
async def test_reads_see_the_previous_write_without_flush(face_index: MilvusFaceIndex, rng):
    for i in range(20):
        v = unit(rng)
        r = record("acme", f"emp_{i}")
        await face_index.add(r, v)
        found = await face_index.search("acme", v, model_id=M1, limit=1, threshold=0.99)
        assert [m.face_id for m in found] == [f"emp_{i}"], f"row {i} not visible to the next search"
        assert await face_index.find("acme", f"emp_{i}") == [r]
        if i % 5 == 4:
            await face_index.remove("acme", [r.row_id])
            assert await face_index.search("acme", v, model_id=M1, limit=1, threshold=0.99) == []
            assert await face_index.find("acme", f"emp_{i}") == []


@async_test
async def test_replacing_a_face_is_add_new_then_remove_old(face_index: MilvusFaceIndex, rng):
    """The Face API's upsert. (Milvus's own upsert would lose the row from tenant-filtered reads on 2.3.5.)"""
    v_old, v_new = unit(rng), unit(rng)
    old = record("acme", "emp_001")
    await face_index.add(old, v_old)
    await face_index.add(record("other", "emp_001"), v_new)

    new = record("acme", "emp_001")
    await face_index.add(new, v_new)
    await face_index.remove("acme", [old.row_id])

    assert await face_index.find("acme", "emp_001") == [new]
    found = await face_index.search("acme", v_new, model_id=M1, limit=5, threshold=0.0)
    assert [(m.face_id, round(m.score, 3)) for m in found] == [("emp_001", 1.0)]
    # The old vector no longer matches the face; and nothing of tenant "other" leaks in.
    assert await face_index.search("acme", v_old, model_id=M1, limit=5, threshold=0.9) == []
    assert len(await face_index.find("other", "emp_001")) == 1


def test_the_index_never_calls_milvus_upsert():
    source = inspect.getsource(vectors_module)
    assert ".upsert(" not in source


@async_test
async def test_concurrent_writes_all_land(face_index: MilvusFaceIndex, rng):
    rows = [(record("acme", f"c{i}"), unit(rng)) for i in range(24)]
    await asyncio.gather(*(face_index.add(r, v) for r, v in rows))
    assert await face_index.count() == len(rows)
    results = await asyncio.gather(
        *(face_index.search("acme", v, model_id=M1, limit=1, threshold=0.99) for _, v in rows)
    )
    assert [[m.face_id for m in found] for found in results] == [[r.face_id] for r, _ in rows]


# -- values are data, never filter syntax ---------------------------------------------------------------------


def test_quote_escapes_exactly_what_the_parsers_need():
    assert quote("plain") == '"plain"'
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("new\nline\ttab\rcr") == '"new\\nline\\ttab\\rcr"'
    assert quote("ünï ✓ 😀") == '"ünï ✓ 😀"'
    with pytest.raises(TypeError):
        quote(3)  # type: ignore[arg-type]


@async_test
async def test_ids_with_quotes_and_backslashes_are_plain_values(face_index: MilvusFaceIndex, rng):
    nasty_tenant = 'ten"ant\\'
    nasty_face = 'x" or tenant != "\\'  # would widen the filter if it were pasted in unescaped
    v = unit(rng)
    r = record(nasty_tenant, nasty_face)
    plain = record("acme", "x")
    await face_index.add(r, v)
    await face_index.add(plain, v)

    assert await face_index.find(nasty_tenant, nasty_face) == [r]
    assert await face_index.find("acme", nasty_face) == []
    assert [m.face_id for m in await face_index.search(nasty_tenant, v, model_id=M1, limit=5, threshold=0.0)] == [
        nasty_face
    ]
    assert [m.face_id for m in await face_index.search('acme" or "1"=="1', v, model_id=M1, limit=5, threshold=0)] == []
    await face_index.remove(nasty_tenant, [r.row_id])
    assert await face_index.find(nasty_tenant, nasty_face) == []
    assert await face_index.find("acme", "x") == [plain]


# -- edge cases -------------------------------------------------------------------------------------------------


@async_test
async def test_empty_collection_and_unknown_tenant_give_nothing(face_index: MilvusFaceIndex, rng):
    v = unit(rng)
    assert await face_index.search("acme", v, model_id=M1, limit=5, threshold=-1.0) == []
    assert await face_index.search("", v, model_id=M1, limit=5, threshold=-1.0) == []
    assert await face_index.find("", "") == []
    await face_index.add(record("acme", "a"), v)
    assert await face_index.search("nobody", v, model_id=M1, limit=5, threshold=-1.0) == []


@async_test
async def test_bad_embeddings_and_records_are_value_errors(face_index: MilvusFaceIndex, rng):
    with pytest.raises(ValueError, match="dimension 512"):
        await face_index.add(record("acme", "a"), np.ones(128, dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 512"):
        await face_index.search("acme", np.ones(513, dtype=np.float32), model_id=M1, limit=1, threshold=0)
    with pytest.raises(ValueError, match="NaN"):
        await face_index.add(record("acme", "a"), np.full(DIM, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="zero"):
        await face_index.add(record("acme", "a"), np.zeros(DIM, dtype=np.float32))
    with pytest.raises(ValueError, match="face_id"):
        await face_index.add(FaceRecord("k", "acme", "", "k", M1, 1), unit(rng))
    with pytest.raises(ValueError, match="tenant is longer"):
        await face_index.add(FaceRecord("k", "t" * 257, "f", "k", M1, 1), unit(rng))
    assert await face_index.count() == 0


# -- opening ----------------------------------------------------------------------------------------------------


# -- subjects, listing, tenant-wide reads and purge --------------------------------------------------------------


@async_test
async def test_a_face_without_subject_is_its_own_subject(face_index: MilvusFaceIndex, rng):
    await face_index.add(record("t", "alice"), unit(rng))
    [row] = await face_index.find("t", "alice")
    assert row.subject_id == "alice"
    assert [r.face_id for r in await face_index.subject_faces("t", "alice")] == ["alice"]


@async_test
async def test_search_by_subject_keeps_each_subjects_best_face(face_index: MilvusFaceIndex, rng):
    probe = unit(rng)
    await face_index.add(record("t", "a1", subject_id="ann"), at_cosine(probe, 0.7, rng))
    await face_index.add(record("t", "a2", subject_id="ann"), at_cosine(probe, 0.9, rng))
    await face_index.add(record("t", "b1", subject_id="bob"), at_cosine(probe, 0.8, rng))
    await face_index.add(record("t", "c1"), at_cosine(probe, 0.1, rng))

    by_face = await face_index.search("t", probe, model_id=M1, limit=5, threshold=0.5)
    assert [(m.face_id, m.subject_id) for m in by_face] == [("a2", "ann"), ("b1", "bob"), ("a1", "ann")]
    by_subject = await face_index.search("t", probe, model_id=M1, limit=5, threshold=0.5, group_by="subject")
    assert [(m.subject_id, m.face_id) for m in by_subject] == [("ann", "a2"), ("bob", "b1")]
    assert by_subject[0].score == pytest.approx(0.9, abs=1e-4)
    limited = await face_index.search("t", probe, model_id=M1, limit=1, threshold=0.5, group_by="subject")
    assert [m.subject_id for m in limited] == ["ann"]


@async_test
async def test_search_exclusion_leaves_out_a_subject_and_a_face(face_index: MilvusFaceIndex, rng):
    probe = unit(rng)
    await face_index.add(record("t", "a1", subject_id="ann"), at_cosine(probe, 0.95, rng))
    await face_index.add(record("t", "self"), at_cosine(probe, 0.9, rng))
    await face_index.add(record("t", "b1", subject_id="bob"), at_cosine(probe, 0.6, rng))
    found = await face_index.search(
        "t", probe, model_id=M1, limit=5, threshold=0.5, exclude=Exclusion(subject_id="ann", face_id="self")
    )
    assert [m.face_id for m in found] == ["b1"]


@async_test
async def test_list_subjects_pages_in_subject_order(face_index: MilvusFaceIndex, rng):
    for i in range(7):
        for j in range(2 if i % 2 else 1):
            await face_index.add(record("t", f"f{i}-{j}", subject_id=f"s{i}"), unit(rng))
    await face_index.add(record("other", "x", subject_id="s0"), unit(rng))

    seen: list[str] = []
    after = None
    while True:
        page = await face_index.list_subjects("t", after=after, limit=3)
        if not page:
            break
        assert len(page) <= 3
        for rows in page:
            assert len({r.subject_id for r in rows}) == 1 and all(r.tenant == "t" for r in rows)
            assert len(rows) == (2 if int(rows[0].subject_id[1:]) % 2 else 1)
        seen += [rows[0].subject_id for rows in page]
        after = seen[-1]
    assert seen == [f"s{i}" for i in range(7)]


@async_test
async def test_vectors_gives_each_face_once_with_its_newest_embedding(face_index: MilvusFaceIndex, rng):
    old, new, other = unit(rng), unit(rng), unit(rng)
    await face_index.add(record("t", "a"), old)
    await face_index.add(record("t", "a"), new)
    await face_index.add(record("t", "b"), other)
    await face_index.add(record("t", "c", model_id=M2), unit(rng))
    found = await face_index.vectors("t", model_id=M1, max_rows=10)
    assert [r.face_id for r in found.records] == ["a", "b"]
    assert found.embeddings.shape == (2, DIM)
    assert float(found.embeddings[0] @ new) == pytest.approx(1.0, abs=1e-5)
    one = await face_index.vectors("t", model_id=M1, face_id="b", max_rows=10)
    assert float(one.embeddings[0] @ other) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(TooManyRows):
        await face_index.vectors("t", model_id=M1, max_rows=2)


@async_test
async def test_purge_tenant_removes_every_row_of_that_tenant_only(face_index: MilvusFaceIndex, rng):
    for i in range(5):
        await face_index.add(record("gone", f"f{i}"), unit(rng))
    await face_index.add(record("kept", "f0"), unit(rng))
    assert await face_index.purge_tenant("gone") == 5
    assert await face_index.list_subjects("gone", after=None, limit=10) == []
    assert await face_index.search("gone", unit(rng), model_id=M1, limit=5, threshold=-1.0) == []
    assert [r.face_id for r in await face_index.find("kept", "f0")] == ["f0"]
    assert await face_index.purge_tenant("gone") == 0


@async_test
async def test_open_is_idempotent_and_a_second_instance_shares_the_collection(make_index, rng):
    first = make_index()
    await first.open()
    await first.open()
    r = record("acme", "a")
    v = unit(rng)
    await first.add(r, v)

    second = make_index(first.collection)
    await second.open()
    assert await second.find("acme", "a") == [r]
    assert [m.face_id for m in await second.search("acme", v, model_id=M1, limit=1, threshold=0.9)] == ["a"]
    assert second.index_type == first.index_type == "HNSW"


@async_test
async def test_two_instances_opening_a_new_collection_at_once_both_succeed(make_index):
    name = new_collection_name()
    a, b = make_index(name), make_index(name)
    await asyncio.gather(a.open(), b.open())
    assert a.collection == b.collection and a.index_type == b.index_type == "HNSW"


@async_test
async def test_an_existing_collection_of_another_dimension_is_refused(make_index):
    await make_index(dim=DIM).open()
    other = make_index(dim=256)
    with pytest.raises(IncompatibleCollection, match="dimension is 512, expected 256"):
        await other.open()


@async_test
async def test_an_existing_collection_with_other_fields_is_refused(make_index, milvus_uri):
    from pymilvus import DataType, MilvusClient

    index = make_index(new_collection_name())
    client = MilvusClient(uri=milvus_uri, timeout=10, dedicated=True)
    try:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row_id", DataType.VARCHAR, max_length=512, is_primary=True)
        schema.add_field("tenant", DataType.VARCHAR, max_length=256, is_partition_key=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
        client.create_collection(index.collection, schema=schema, timeout=10)
    finally:
        client.close()
    with pytest.raises(IncompatibleCollection, match=r"field 'face_id' is missing.*field 'subject_id' is missing"):
        await index.open()


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


@async_test
async def test_flat_and_ivf_indexes_search_too(make_index, rng):
    kinds = ("FLAT", "IVF_FLAT", "IVF_SQ8")
    indexes = [make_index(new_collection_name(), milvus_index_type=kind, milvus_ivf_nlist=16) for kind in kinds]
    await asyncio.gather(*(index.open() for index in indexes))
    for i, (kind, index) in enumerate(zip(kinds, indexes, strict=True)):
        assert index.index_type == kind
        v = unit(rng)
        await index.add(record("acme", f"k{i}"), v)
        assert [m.face_id for m in await index.search("acme", v, model_id=M1, limit=3, threshold=0.5)] == [f"k{i}"]


@pytest.mark.parametrize("kind", ["SCANN", "IVF_SQ8"])
@async_test
async def test_quantized_indexes_find_noisy_copies_once_segments_are_sealed_and_indexed(
    make_index, backend, milvus_uri, rng, kind
):
    """Rows go through the vector index only once their segment is sealed and indexed (a server scans growing
    segments exactly; milvus-lite builds its index at load), so seal, index and reopen the collection as a restart
    does: a noisy copy of a stored face (cosine 0.6, a new photo of the person) must come back first, scored by
    its true cosine. milvus-lite cannot build SCANN (a server-only index): it falls back to exact FLAT."""
    from pymilvus import MilvusClient

    # Milvus 2.3 leaves segments under 1024 rows unindexed. Every list probed: the partitioning cannot lose the
    # face, so what is checked is the quantized scan (and SCANN's re-scoring on the raw vectors).
    settings = {"milvus_index_type": kind, "milvus_ivf_nlist": 16, "milvus_ivf_nprobe": 16}
    index = make_index(new_collection_name(), **settings)
    await index.open()
    stored = np.stack([unit(rng) for _ in range(2000)])
    await index.add_many([record("acme", f"q{i:04d}") for i in range(len(stored))], stored)
    client = MilvusClient(uri=milvus_uri, timeout=60, dedicated=True)
    try:
        client.flush(index.collection, timeout=60)
        deadline = time.monotonic() + 120
        while backend == "milvus235":
            info = client.describe_index(index.collection, client.list_indexes(index.collection)[0], timeout=10)
            if int(info.get("indexed_rows", 0)) >= len(stored):
                break
            assert time.monotonic() < deadline, f"index not built: {info}"
            time.sleep(1)
        client.release_collection(index.collection, timeout=60)
    finally:
        client.close()
    await index.close()

    reopened = make_index(index.collection, **settings)
    await reopened.open()
    assert reopened.index_type == ("FLAT" if kind == "SCANN" and backend != "milvus235" else kind)
    for i in (0, 777, 1999):
        matches = await reopened.search("acme", at_cosine(stored[i], 0.6, rng), model_id=M1, limit=5, threshold=0.0)
        assert matches[0].face_id == f"q{i:04d}"
        assert matches[0].score == pytest.approx(0.6, abs=0.02)  # IVF_SQ8 scores come from 8-bit codes
        assert len(matches) == 5 and matches[1].score < 0.35


@pytest.mark.parametrize("backend", ["lite"], indirect=True)
@async_test
async def test_milvus_lite_without_faiss_falls_back_to_flat(make_index, milvus_uri, rng, monkeypatch, caplog):
    """milvus-lite builds HNSW/IVF with faiss. Without it a loaded collection keeps working (unindexed), but the
    next load fails: the next start must switch the collection to FLAT instead of refusing to start."""
    import milvus_lite.index.factory as factory
    from pymilvus import MilvusClient

    monkeypatch.setattr(factory, "_FAISS_AVAILABLE", False)  # embedded: the engine runs in this process
    first = make_index()
    await first.open()
    v = unit(rng)
    await first.add(record("acme", "a"), v)
    client = MilvusClient(uri=milvus_uri, timeout=10, dedicated=True)
    try:  # what a restart does: the row is on disk in a segment, the collection is released
        client.flush(first.collection, timeout=10)
        client.release_collection(first.collection, timeout=10)
    finally:
        client.close()

    second = make_index(first.collection)
    with caplog.at_level(logging.WARNING, logger="faceauth.storage.vectors"):
        await second.open()
    assert second.index_type == "FLAT"
    assert "falling back to FLAT" in caplog.text
    assert [m.face_id for m in await second.search("acme", v, model_id=M1, limit=1, threshold=0.9)] == ["a"]
    third = make_index(first.collection)  # and the next start keeps the FLAT index
    await third.open()
    assert third.index_type == "FLAT"


# -- outages ----------------------------------------------------------------------------------------------------


@pytest.fixture
def own_lite_server(tmp_path: Path):
    """A milvus-lite gRPC server of this test only (it gets stopped and restarted)."""
    server = MilvusLiteServer(tmp_path / "lite-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_down_is_storage_unavailable_and_the_index_recovers_when_it_returns(own_lite_server, tmp_path):
    rng = np.random.default_rng(7)
    settings = index_settings(own_lite_server.uri, "recovery", tmp_path, milvus_timeout_seconds=1.0)
    index = open_face_index(settings)
    v = unit(rng)
    kept = record("acme", "kept")

    async def before() -> None:
        await index.open()
        await index.add(kept, v)
        await index.ping()

    asyncio.run(before())
    own_lite_server.stop()

    async def while_down() -> None:
        calls = [
            index.ping(),
            index.add(record("acme", "lost"), unit(rng)),
            index.find("acme", "kept"),
            index.search("acme", v, model_id=M1, limit=1, threshold=0.0),
            index.remove("acme", [kept.row_id]),
            index.other_model_ids(M1),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as caught:
                await call
            assert caught.value.store == "vectors" and caught.value.detail
            assert time.monotonic() - started < 5.0, "a down server must fail fast, not hang"

    asyncio.run(while_down())
    own_lite_server.start()  # same port, same data folder

    async def after() -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                await index.ping()
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "the index did not reconnect"
                await asyncio.sleep(0.2)
        assert await index.find("acme", "kept") == [kept]
        assert [m.face_id for m in await index.search("acme", v, model_id=M1, limit=1, threshold=0.9)] == ["kept"]
        again = record("acme", "again")
        await index.add(again, unit(rng))
        assert await index.find("acme", "again") == [again]
        await index.close()

    asyncio.run(after())


def test_an_unreachable_server_fails_open_with_storage_unavailable(tmp_path):
    from bench.servers.process import free_ports

    settings = index_settings(f"http://127.0.0.1:{free_ports(1)[0]}", "nothing", tmp_path, milvus_timeout_seconds=1.0)
    index = open_face_index(settings)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        asyncio.run(index.open())
    assert time.monotonic() - started < 8.0
    asyncio.run(index.close())
