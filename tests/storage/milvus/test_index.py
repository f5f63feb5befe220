"""MilvusFaceIndex against real Milvus: milvus-lite embedded, the milvus-lite gRPC server and Milvus 2.3.5.

Nothing is flushed anywhere: every read below must see the writes before it (read-your-writes).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import faceauth.storage.milvus
from faceauth.storage.milvus.index import MilvusFaceIndex
from faceauth.storage.records import Exclusion, FaceRecord, TooManyRows
from tests.aio import async_test
from tests.storage.milvus.conftest import DIM, M1, M2, at_cosine, record, unit

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
    for module in pkgutil.iter_modules(faceauth.storage.milvus.__path__, "faceauth.storage.milvus."):
        source = inspect.getsource(importlib.import_module(module.name))
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
