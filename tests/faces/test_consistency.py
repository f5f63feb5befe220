"""A face is in both stores or in neither: one store fails in the middle of a request, and nothing is left half-written.

The stores are real (milvus-lite, local files) and so is the ML service; `Faulty` is a fake used only to inject
the failure: it wraps a real store and makes one chosen call fail, either before it reaches the store or after the
store has done the work (a timeout on the way back).
"""

from __future__ import annotations

import asyncio

import pytest

from faceauth.api.container import open_face_index, open_object_store
from faceauth.storage.errors import StorageUnavailable
from tests.apitest import api_settings, enrol, match_ids, search, stored_keys, stored_rows


class Faulty:
    """Fault injection only: delegates to a real store; `fail(method, ...)` makes that method raise."""

    def __init__(self, real: object, store: str) -> None:
        self._real = real
        self._store = store
        self._faults: dict[str, list[bool]] = {}

    def fail(self, method: str, *, after_doing_it: bool = False, times: int = 1) -> None:
        self._faults.setdefault(method, []).extend([after_doing_it] * times)

    def __getattr__(self, name: str):
        real = getattr(self._real, name)
        if not callable(real):
            return real

        async def call(*args, **kwargs):
            pending = self._faults.get(name)
            if not pending:
                return await real(*args, **kwargs)
            after = pending.pop(0)
            if after:
                await real(*args, **kwargs)
            raise StorageUnavailable(self._store, f"injected failure in {name}")

        return call


@pytest.fixture
def faulty(ml_service, make_api, tmp_path):
    """(api, index, objects): a Face API whose two real stores can be made to fail on demand."""
    settings = api_settings(ml_service, tmp_path / "data")
    index = Faulty(open_face_index(settings), "vectors")
    objects = Faulty(open_object_store(settings), "objects")
    try:
        with make_api(index=index, objects=objects) as client:
            yield client, index, objects
    finally:
        asyncio.run(index.close())
        asyncio.run(objects.close())


def assert_whole(api, tenant: str, face_id: str) -> list:
    """At most one revision, and the vectors and images of the face point at each other exactly."""
    rows = stored_rows(api, tenant, face_id)
    keys = stored_keys(api, f"{tenant}/{face_id}/")
    assert len(rows) <= 1, rows
    assert sorted(r.object_key for r in rows) == keys, (rows, keys)
    return keys


@pytest.mark.parametrize(
    ("store", "method", "after", "code"),
    [
        ("objects", "put", False, "object_store_unavailable"),
        ("objects", "put", True, "object_store_unavailable"),
        ("index", "add", False, "vector_store_unavailable"),
        ("index", "add", True, "vector_store_unavailable"),
    ],
)
def test_a_failed_insert_leaves_nothing(faulty, people, photos, store, method, after, code):
    api, index, objects = faulty
    {"objects": objects, "index": index}[store].fail(method, after_doing_it=after)
    r = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    assert r.status_code == 503 and r.json()["error"]["code"] == code
    assert r.headers["retry-after"] and r.json()["requestId"]
    assert assert_whole(api, "acme", "emp_1") == []
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).status_code == 404
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == []
    # and the store works again for the next request
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    assert len(assert_whole(api, "acme", "emp_1")) == 1


def test_a_vector_written_before_milvus_fell_over_is_removed_by_the_next_write(faulty, people, photos):
    api, index, _ = faulty
    index.fail("add", after_doing_it=True)  # the row lands, the answer is lost ...
    index.fail("remove")  # ... and taking it back fails too
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 503
    assert len(stored_rows(api, "acme", "emp_1")) == 1 and stored_keys(api, "acme/emp_1/") == []

    r = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    assert r.status_code == 200, r.text  # the image-less row was a leftover, not a face
    assert assert_whole(api, "acme", "emp_1") == [r.json()["face"]["object_key"]]


@pytest.mark.parametrize(
    ("store", "method"),
    [("objects", "put"), ("index", "add"), ("index", "remove")],
)
def test_a_failed_upsert_keeps_the_previous_face(faulty, people, photos, store, method):
    api, index, objects = faulty
    old = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).json()["face"]["object_key"]
    {"objects": objects, "index": index}[store].fail(method)
    r = enrol(api, "acme", "emp_1", photos(people[1].enrol_photo), op="upsert")
    assert r.status_code == 503
    assert assert_whole(api, "acme", "emp_1") == [old]
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == ["emp_1"]
    assert match_ids(search(api, "acme", photos(people[1].probe_photo))) == []


def test_an_upsert_that_cannot_remove_the_old_image_is_finished_by_a_retry(faulty, people, photos):
    api, _, objects = faulty
    old = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).json()["face"]["object_key"]
    objects.fail("delete")
    r = enrol(api, "acme", "emp_1", photos(people[1].enrol_photo), op="upsert")
    assert r.status_code == 503 and r.json()["error"]["code"] == "object_store_unavailable"
    # consistent already: the new face is complete; the old image is a leftover no vector points to
    rows = stored_rows(api, "acme", "emp_1")
    assert len(rows) == 1 and rows[0].object_key != old
    assert old in stored_keys(api, "acme/emp_1/")

    retry = enrol(api, "acme", "emp_1", photos(people[1].enrol_photo), op="upsert")
    assert retry.status_code == 200
    assert assert_whole(api, "acme", "emp_1") == [retry.json()["face"]["object_key"]]
    assert match_ids(search(api, "acme", photos(people[1].probe_photo))) == ["emp_1"]


def test_a_delete_that_cannot_reach_milvus_changes_nothing(faulty, people, photos):
    api, index, _ = faulty
    key = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).json()["face"]["object_key"]
    index.fail("remove")
    r = api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "vector_store_unavailable"
    assert assert_whole(api, "acme", "emp_1") == [key]
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == ["emp_1"]


def test_a_delete_that_cannot_remove_the_image_is_finished_by_a_retry(faulty, people, photos):
    api, _, objects = faulty
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    objects.fail("delete")
    r = api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "object_store_unavailable"
    # the face no longer matches; its image waits for the retry
    assert stored_rows(api, "acme", "emp_1") == []
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == []

    assert api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"}).status_code == 200
    assert assert_whole(api, "acme", "emp_1") == []
    assert api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"}).status_code == 404


def test_reads_answer_503_when_a_store_is_down(faulty, people, photos):
    api, index, _ = faulty
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    index.fail("find")
    r = api.get("/v1/faces/get/emp_1", params={"tenant": "acme"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "vector_store_unavailable"
    index.fail("search")
    r = search(api, "acme", photos(people[0].probe_photo))
    assert r.status_code == 503 and r.json()["error"]["code"] == "vector_store_unavailable"
