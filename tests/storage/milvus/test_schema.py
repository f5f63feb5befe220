"""Opening a collection: created or checked, shared by several instances, refused when incompatible, and its
vector index (HNSW, FLAT, IVF, quantized; FLAT when milvus-lite cannot build the one asked for)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from faceauth.storage.milvus.schema import IncompatibleCollection
from tests.aio import async_test
from tests.storage.milvus.conftest import DIM, M1, at_cosine, new_collection_name, record, unit


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
    with caplog.at_level(logging.WARNING, logger="faceauth.storage.milvus.schema"):
        await second.open()
    assert second.index_type == "FLAT"
    assert "falling back to FLAT" in caplog.text
    assert [m.face_id for m in await second.search("acme", v, model_id=M1, limit=1, threshold=0.9)] == ["a"]
    third = make_index(first.collection)  # and the next start keeps the FLAT index
    await third.open()
    assert third.index_type == "FLAT"
