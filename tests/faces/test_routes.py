"""Enrol, search, get, delete, upsert through the Face API and the real ML service, on embedded stores."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from faceauth.config import DEFAULT_MATCH_THRESHOLD
from tests.apitest import enrol, match_ids, search, stored_keys, stored_rows


def test_enrolled_people_are_found_top1_and_strangers_match_nothing(api, people, photos):
    enrolled, strangers = people[: len(people) // 2 + 1], people[len(people) // 2 + 1 :]
    for i, person in enumerate(enrolled):
        r = enrol(api, "acme", f"emp_{i:03d}", photos(person.enrol_photo))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["userOperationResult"] == {"operation": "INSERT", "status": "success"}
        assert body["imageQualityAssessment"]["passed"] is True

    for i, person in enumerate(enrolled):
        r = search(api, "acme", photos(person.probe_photo))
        matches = r.json()["searchResult"]["matches"]
        assert matches and matches[0]["id"] == f"emp_{i:03d}", (person, matches)
        assert matches[0]["score"] >= DEFAULT_MATCH_THRESHOLD
        assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)

    assert strangers, "the split must leave somebody unenrolled"
    for person in strangers:
        for photo in person.photos:
            assert match_ids(search(api, "acme", photos(photo))) == [], photo


def test_search_answer_has_the_reference_shape(api, people, photos):
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    r = search(api, "acme", photos(people[0].probe_photo), top_k=3, threshold=0.2)
    body = r.json()
    assert r.headers["x-request-id"] == body["requestId"]
    assert set(body) >= {"requestId", "imageQualityAssessment", "searchResult"}
    assert set(body["imageQualityAssessment"]) >= {"passed", "nsfw", "spoof", "blur"}
    result = body["searchResult"]
    assert result["top_k"] == 3 and result["threshold"] == 0.2 and result["skipped_reason"] is None
    assert result["matches"][0].keys() == {"id", "subject_id", "score"}
    assert result["group_by"] == "face"


def test_top_k_limits_the_matches(api, people, photos):
    for i, person in enumerate(people[:4]):
        enrol(api, "acme", f"emp_{i}", photos(person.enrol_photo))
    r = search(api, "acme", photos(people[0].probe_photo), top_k=2, threshold=0.0)
    assert len(match_ids(r)) == 2
    assert match_ids(r)[0] == "emp_0"


def test_another_tenant_sees_nothing(api, people, photos):
    assert enrol(api, "tenant_a", "emp_1", photos(people[0].enrol_photo)).status_code == 200

    assert match_ids(search(api, "tenant_b", photos(people[0].probe_photo))) == []
    r = api.get("/v1/faces/get/emp_1", params={"tenant": "tenant_b"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "face_not_found"
    r = api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "tenant_b"})
    assert r.status_code == 404

    # tenant_b's attempts changed nothing in tenant_a
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "tenant_a"}).status_code == 200
    assert match_ids(search(api, "tenant_a", photos(people[0].probe_photo))) == ["emp_1"]


def test_the_same_id_in_two_tenants_is_two_faces(api, people, photos):
    first, second = people[0], people[1]
    assert enrol(api, "tenant_a", "emp_1", photos(first.enrol_photo)).status_code == 200
    assert enrol(api, "tenant_b", "emp_1", photos(second.enrol_photo)).status_code == 200

    assert match_ids(search(api, "tenant_a", photos(first.probe_photo))) == ["emp_1"]
    assert match_ids(search(api, "tenant_a", photos(second.probe_photo))) == []
    assert match_ids(search(api, "tenant_b", photos(second.probe_photo))) == ["emp_1"]

    assert api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "tenant_b"}).status_code == 200
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "tenant_b"}).status_code == 404
    kept = api.get("/v1/faces/get/emp_1", params={"tenant": "tenant_a"})
    assert kept.status_code == 200 and kept.json()["tenant"] == "tenant_a"


def test_get_returns_the_record(api, people, photos):
    created = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).json()["face"]
    r = api.get("/v1/faces/get/emp_1", params={"tenant": "acme"})
    assert r.status_code == 200
    body = r.json()
    assert body["requestId"] == r.headers["x-request-id"]
    assert {k: body[k] for k in ("face_id", "tenant", "object_key")} == {
        "face_id": "emp_1",
        "tenant": "acme",
        "object_key": created["object_key"],
    }
    assert body["object_key"].startswith("acme/emp_1/")
    assert body["model_id"] == created["model_id"] and body["model_id"]


def test_insert_of_an_existing_id_is_409_and_changes_nothing(api, people, photos):
    first = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).json()["face"]
    r = enrol(api, "acme", "emp_1", photos(people[1].enrol_photo))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "face_already_exists" and r.json()["requestId"]
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).json()["object_key"] == first["object_key"]
    assert match_ids(search(api, "acme", photos(people[1].probe_photo))) == []
    assert stored_keys(api) == [first["object_key"]]


def test_upsert_replaces_the_face_and_removes_the_old_image_and_vector(api, people, photos):
    first, second = people[0], people[1]
    old = enrol(api, "acme", "emp_1", photos(first.enrol_photo), op="upsert")
    assert old.status_code == 200 and old.json()["userOperationResult"]["operation"] == "UPSERT"
    new = enrol(api, "acme", "emp_1", photos(second.enrol_photo), op="upsert")
    assert new.status_code == 200, new.text
    new_key = new.json()["face"]["object_key"]
    assert new_key != old.json()["face"]["object_key"]

    assert match_ids(search(api, "acme", photos(first.probe_photo))) == []
    assert match_ids(search(api, "acme", photos(second.probe_photo))) == ["emp_1"]
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).json()["object_key"] == new_key
    assert stored_keys(api) == [new_key]


def test_delete_removes_the_vector_and_the_image(api, people, photos):
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    r = api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"})
    assert r.status_code == 200
    assert r.json()["userOperationResult"] == {"operation": "DELETE", "status": "success"}
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).status_code == 404
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == []
    assert stored_keys(api) == []
    again = api.delete("/v1/faces/delete", params={"id": "emp_1", "tenant": "acme"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "face_not_found"
    # the id is free again
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200


def test_a_failed_quality_check_is_422_on_enrol_and_no_match_on_search(api, photos):
    spoof = photos.antispoof("spoof_print_1.jpg")
    r = enrol(api, "acme", "emp_1", spoof)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "quality_check_failed" and "spoof" in error["details"]["failed_checks"]
    assert error["details"]["imageQualityAssessment"]["spoof"]["is_spoof"] is True
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "acme"}).status_code == 404
    assert stored_keys(api) == []

    r = search(api, "acme", spoof)
    assert r.status_code == 200
    body = r.json()
    assert body["searchResult"]["matches"] == []
    assert body["searchResult"]["skipped_reason"] == "quality_check_failed"
    assert "spoof" in body["imageQualityAssessment"]["reasons"]


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_a_photo_without_a_face_is_422_no_face_detected(api):
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    r = enrol(api, "acme", "emp_1", _png(np.stack([gradient] * 3, axis=-1)))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "no_face_detected"


def test_an_unreadable_upload_is_422_with_the_ml_service_code(api, photos):
    r = enrol(api, "acme", "emp_1", b"this is not an image")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_image"
    truncated = photos.antispoof("live_1.jpg")[:2000]
    r = enrol(api, "acme", "emp_1", truncated)
    assert r.status_code == 422 and r.json()["error"]["code"] in {"image_truncated", "invalid_image"}
    r = enrol(api, "acme", "emp_1", b"")
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_image"


def test_bad_fields_are_422_with_a_request_id(api, photos):
    live = photos.antispoof("live_1.jpg")
    cases = [
        search(api, "acme", live, top_k=0),
        search(api, "acme", live, top_k=101),
        search(api, "acme", live, threshold=1.5),
        search(api, "acme", live, threshold=-0.1),
        search(api, "acme", live, threshold="high"),
        enrol(api, "acme", "has space", live),
        enrol(api, "acme", "a/b", live),
        enrol(api, "acme", "x" * 129, live),
        enrol(api, "t" * 257, "emp_1", live),
        enrol(api, "ac'me", "emp_1", live),
        api.post("/v1/faces/insert", data={"id": "emp_1"}, files={"file": ("p.jpg", live)}),  # no tenant
        api.post("/v1/faces/insert", data={"id": "emp_1", "tenant": "acme"}),  # no file
        api.get("/v1/faces/get/emp_1"),  # get needs the tenant
        api.delete("/v1/faces/delete", params={"id": "emp_1"}),  # so does delete
    ]
    for r in cases:
        assert r.status_code == 422, (r.request.url, r.text)
        body = r.json()
        assert body["error"]["code"] == "validation_error"
        assert body["requestId"] == r.headers["x-request-id"]


def test_valid_edge_values_are_accepted(api, people, photos):
    face_id, tenant = "E" + "x" * 127, "T" + "t" * 255
    r = enrol(api, tenant, face_id, photos(people[0].enrol_photo))
    assert r.status_code == 200
    # A file name or a MinIO path segment holds 255 bytes: the 256-character tenant is shortened in the key.
    key = r.json()["face"]["object_key"]
    assert all(len(segment) <= 255 for segment in key.split("/")) and key.split("/")[1] == face_id
    assert stored_keys(api, key.rsplit("/", 1)[0] + "/") == [key]
    for top_k, threshold in ((1, 0.0), (100, 1.0)):
        assert search(api, tenant, photos(people[0].probe_photo), top_k=top_k, threshold=threshold).status_code == 200
    assert api.get(f"/v1/faces/get/{face_id}", params={"tenant": tenant}).status_code == 200


def test_an_incoming_request_id_is_kept(api):
    r = api.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42" and r.json()["requestId"] == "trace-42"
    r = api.get("/v1/faces/get/nobody", params={"tenant": "acme"}, headers={"X-Request-ID": "trace-43"})
    assert r.status_code == 404 and r.json()["requestId"] == "trace-43"


def test_an_oversized_upload_is_413(make_api):
    with make_api(max_image_bytes=4096) as api:
        r = enrol(api, "acme", "emp_1", b"\xff\xd8\xff" + b"0" * 10_000)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_readyz_reports_every_dependency(api):
    r = api.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["warnings"] == []
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "milvus": "ok",
        "object_store": "ok",
        "ml_service": "ok",
        "ml_models": "ok",  # every model a photo needs is loaded
    }
    assert body["model_id"]
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/faces/insert", "/v1/faces/upsert", "/v1/faces/search", "/v1/faces/delete"} <= set(paths)


def test_two_concurrent_inserts_of_one_id_give_one_face_and_one_409(api, people, photos):
    from concurrent.futures import ThreadPoolExecutor

    images = [photos(people[0].enrol_photo), photos(people[1].enrol_photo)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda image: enrol(api, "acme", "emp_1", image), images))
    assert sorted(r.status_code for r in responses) == [200, 409]
    assert len(stored_rows(api, "acme", "emp_1")) == 1
    assert len(stored_keys(api, "acme/emp_1/")) == 1


def test_stored_photos_keep_no_metadata_and_are_upright(api, people, photos):
    import io

    from PIL import Image

    upright = Image.open(io.BytesIO(photos(people[0].enrol_photo))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to show
    exif[0x013B] = "Jane Doe"  # Artist
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)})  # GPS position
    sent = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(sent, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(sent.getvalue())).getexif().get_ifd(0x8825)  # the photo sent has a GPS position

    assert enrol(api, "acme", "emp_exif", sent.getvalue()).status_code == 200
    objects = api.app.state.container.objects
    [key] = stored_keys(api, "acme/emp_exif/")
    stored = Image.open(io.BytesIO(api.portal.call(objects.get, key).data))
    assert len(stored.getexif()) == 0 and "exif" not in stored.info  # no GPS, no artist, no orientation
    assert stored.size == upright.size  # the orientation applied to the pixels
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == ["emp_exif"]
