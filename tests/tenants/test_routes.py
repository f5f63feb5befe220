"""Tenant purge (right to erasure): every vector and every image of the tenant goes, and is counted."""

from __future__ import annotations

import asyncio
import threading

import pytest

from faceauth.api.container import open_face_index, open_object_store
from faceauth.auth import cache as key_cache
from tests.apitest import api_settings, enrol, match_ids, new_key, search, stored_keys


def test_purge_leaves_nothing_of_the_tenant_in_either_store(api, people, photos):
    for i, person in enumerate(people[:3]):
        assert enrol(api, "doomed", f"emp_{i}", photos(person.enrol_photo)).status_code == 200
    assert enrol(api, "doomed", "emp_0", photos(people[0].probe_photo), op="upsert").status_code == 200
    assert enrol(api, "kept", "emp_0", photos(people[0].enrol_photo)).status_code == 200

    r = api.delete("/v1/tenants/doomed")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == {"faces": 3, "vectors": 3, "images": 3, "uploads": 0, "keys_revoked": 0}
    assert stored_keys(api, "doomed/") == []
    index = api.app.state.container.index
    assert api.portal.call(lambda: index.list_subjects("doomed", after=None, limit=10)) == []
    assert match_ids(search(api, "doomed", photos(people[0].probe_photo), threshold=0.0)) == []
    # The other tenant is untouched.
    assert match_ids(search(api, "kept", photos(people[0].probe_photo))) == ["emp_0"]
    assert len(stored_keys(api, "kept/")) == 1

    again = api.delete("/v1/tenants/doomed")
    assert again.status_code == 200
    assert again.json()["deleted"] == {"faces": 0, "vectors": 0, "images": 0, "uploads": 0, "keys_revoked": 0}


def test_purge_validates_the_tenant_name(api):
    r = api.delete("/v1/tenants/bad%20name")
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_purge_erases_the_tenants_drop_area_photos(api, people, photos):
    objects = api.app.state.container.objects
    image = photos(people[0].enrol_photo)
    for key in ("_uploads/doomed/a.jpg", "_uploads/doomed/sub/b.jpg", "_uploads/kept/c.jpg"):
        api.portal.call(objects.put, key, image, "image/jpeg")
    r = api.delete("/v1/tenants/doomed")
    assert r.status_code == 200 and r.json()["deleted"]["uploads"] == 2
    assert api.portal.call(objects.list, "_uploads/") == ["_uploads/kept/c.jpg"]


def test_purge_erases_the_tenants_liveness_replay_and_idempotency_records(api):
    objects = api.app.state.container.objects
    kept = ["_liveness/kept/s1", "_replay/kept/w1", "_idempotency/kept/a1"]
    for key in ("_liveness/doomed/s1", "_replay/doomed/w1", "_idempotency/doomed/a1", *kept):
        api.portal.call(objects.put, key, b"{}", "application/json")
    assert api.delete("/v1/tenants/doomed").status_code == 200
    left = [k for area in ("_liveness/", "_replay/", "_idempotency/") for k in api.portal.call(objects.list, area)]
    assert sorted(left) == sorted(kept)


def test_purge_revokes_the_tenants_keys_first_unless_told_to_keep_them(api, people, photos, monkeypatch):
    monkeypatch.setattr(key_cache, "CACHE_SECONDS", 0.0)  # see the revocation at once, not within 10 s
    doomed, kept, other = new_key(api, "doomed"), new_key(api, "kept"), new_key(api, "other")

    def status(key: str, tenant: str) -> int:
        return api.get("/v1/subjects", params={"tenant": tenant}, headers={"X-Api-Key": key}).status_code

    assert status(doomed, "doomed") == 200
    r = api.delete("/v1/tenants/doomed")
    assert r.status_code == 200 and r.json()["deleted"]["keys_revoked"] == 1
    assert status(doomed, "doomed") == 401
    assert status(other, "other") == 200  # only the purged tenant's keys

    r = api.delete("/v1/tenants/kept", params={"keep_keys": "true"})
    assert r.status_code == 200 and r.json()["deleted"]["keys_revoked"] == 0
    assert status(kept, "kept") == 200


class PausedImagePut:
    """Fault injection only: a real object store whose next put of a face image waits until released, so a purge can
    run while an enrolment is half-way."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.reached, self.release = threading.Event(), threading.Event()
        self.armed = False

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.armed and not key.startswith("_"):
            self.armed = False
            self.reached.set()
            await asyncio.to_thread(self.release.wait, 60)
        await self._real.put(key, data, content_type)


@pytest.fixture
def paused(ml_service, make_api, tmp_path):
    settings = api_settings(ml_service, tmp_path / "data")
    index, objects = open_face_index(settings), PausedImagePut(open_object_store(settings))
    try:
        with make_api(index=index, objects=objects) as client:
            yield client, objects
    finally:
        asyncio.run(index.close())
        asyncio.run(objects.close())


def test_an_enrolment_running_during_the_purge_does_not_survive_it(paused, people, photos):
    api, objects = paused
    objects.armed = True
    answers: list = []
    writer = threading.Thread(
        target=lambda: answers.append(enrol(api, "doomed", "late", photos(people[0].enrol_photo)))
    )
    writer.start()
    try:
        assert objects.reached.wait(60)  # the enrolment is writing its image
        assert api.delete("/v1/tenants/doomed").status_code == 200
    finally:
        objects.release.set()
        writer.join(60)
    late = answers[0]
    assert late.status_code == 409 and late.json()["error"]["code"] == "tenant_purged", late.text
    assert stored_keys(api, "doomed/") == []
    index = api.app.state.container.index
    assert api.portal.call(index.find, "doomed", "late") == []
    # After the purge the tenant can enrol again.
    assert enrol(api, "doomed", "again", photos(people[0].enrol_photo)).status_code == 200


def test_the_vector_delete_is_issued_even_when_the_count_says_zero(api, monkeypatch):
    index = api.app.state.container.index
    writes: list[str] = []
    real_write = index._write

    def recording_write(client, op, **kwargs):  # records, then does the real write
        writes.append(op)
        return real_write(client, op, **kwargs)

    monkeypatch.setattr(index, "_write", recording_write)
    assert api.delete("/v1/tenants/empty").status_code == 200
    assert writes == ["delete"]
