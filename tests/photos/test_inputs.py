"""A photo can be uploaded, sent as base64 or given by URL (http from a loopback server, s3:// of the store)."""

from __future__ import annotations

import base64

from tests.apitest import enrol, match_ids, search


def test_base64_and_url_photos_enrol_and_search_like_uploads(make_api, people, photos, server):
    server.files["/probe.jpg"] = photos(people[0].probe_photo)
    b64 = base64.b64encode(photos(people[0].enrol_photo)).decode()
    with make_api(image_url_allowed_hosts="127.0.0.1") as api:
        r = api.post("/v1/faces/insert", data={"id": "emp_1", "tenant": "acme", "image_b64": b64})
        assert r.status_code == 200, r.text
        data_url = api.post(
            "/v1/faces/insert", data={"id": "emp_2", "tenant": "acme", "image_b64": f"data:image/jpeg;base64,{b64}"}
        )
        assert data_url.status_code == 200, data_url.text
        r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": server.url("/probe.jpg")})
        assert sorted(match_ids(r)) == ["emp_1", "emp_2"]
    assert server.requests == ["/probe.jpg"]


def test_a_loopback_url_is_refused_unless_allowlisted(api, people, photos, server):
    server.files["/probe.jpg"] = photos(people[0].probe_photo)
    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": server.url("/probe.jpg")})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "image_url_forbidden" and error["details"]["field"] == "image_url"
    assert r.json()["requestId"]
    assert server.requests == []  # refused before connecting


def test_each_url_failure_has_its_own_code(make_api, server):
    server.files["/page.html"] = b"<html>not a photo</html>"
    server.redirects["/loop"] = "/loop"
    with make_api(image_url_allowed_hosts="127.0.0.1") as api:

        def code(url: str) -> tuple[int, str]:
            r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": url})
            return r.status_code, r.json()["error"]["code"]

        assert code(server.url("/missing.jpg")) == (422, "image_url_unreachable")
        assert code(server.url("/page.html")) == (415, "image_url_not_image")
        assert code(server.url("/loop")) == (422, "image_url_too_many_redirects")
        assert code("ftp://127.0.0.1/x.jpg") == (422, "image_url_invalid")
        assert code("s3://another-bucket/_uploads/x.jpg") == (400, "image_url_forbidden")


def test_bad_base64_and_two_photos_at_once_are_4xx(api, photos, people):
    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_b64": "%%% not base64"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_base64"
    r = api.post(
        "/v1/faces/search",
        data={"tenant": "acme", "image_b64": base64.b64encode(photos(people[0].probe_photo)).decode()},
        files={"file": ("p.jpg", photos(people[0].probe_photo))},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "ambiguous_image"
    r = api.post("/v1/faces/search", data={"tenant": "acme"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_s3_urls_read_the_drop_prefix_and_the_tenants_own_images_only(api, people, photos):
    objects = api.app.state.container.objects
    api.portal.call(objects.put, "_uploads/acme/selfie.jpg", photos(people[0].probe_photo), "image/jpeg")
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    assert enrol(api, "rival", "emp_9", photos(people[1].enrol_photo)).status_code == 200
    bucket = api.app.state.settings.minio_bucket

    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": f"s3://{bucket}/_uploads/acme/selfie.jpg"})
    assert match_ids(r) == ["emp_1"]
    own_key = enrol(api, "acme", "emp_2", photos(people[2].enrol_photo)).json()["face"]["object_key"]
    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": f"s3://{bucket}/{own_key}"})
    assert "emp_2" in match_ids(r)

    rival_key = api.get("/v1/faces/get/emp_9", params={"tenant": "rival"}).json()["object_key"]
    api.portal.call(objects.put, "_uploads/rival/theirs.jpg", photos(people[1].probe_photo), "image/jpeg")
    for url in (
        f"s3://{bucket}/{rival_key}",
        f"s3://{bucket}/_uploads/acme/../../{rival_key}",
        f"s3://{bucket}/_uploads/rival/theirs.jpg",
    ):
        r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": url})
        assert r.status_code == 400 and r.json()["error"]["code"] == "image_url_forbidden", url
    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_url": f"s3://{bucket}/_uploads/acme/none.jpg"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "image_url_unreachable"


def test_detect_gives_every_face_with_box_landmarks_pose_and_quality(api, photos, shared_dir):
    group = (shared_dir / "faces" / "deepface" / "couple.jpg").read_bytes()
    r = api.post("/v1/faces/detect", files={"file": ("g.jpg", group)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces_count"] == len(body["faces"]) >= 2 and body["requestId"]
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= body["width"] and 0 <= y1 < y2 <= body["height"]
        assert len(face["landmarks"]) == 5 and set(face["pose"]) == {"yaw", "pitch", "roll"}
        assert 0.0 <= face["quality"] <= 1.0
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)
    assert api.post("/v1/faces/detect", files={"file": ("x.jpg", b"not an image")}).status_code == 422


def test_an_aligned_crop_enrols_and_is_found_from_a_full_photo(api, people, photos):
    import cv2
    import numpy as np

    from faceauth.inference.alignment import align_face

    full = photos(people[0].enrol_photo)
    face = api.post("/v1/faces/detect", files={"file": ("p.jpg", full)}).json()["faces"][0]
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(full, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    crop = align_face(rgb, np.asarray(face["landmarks"], dtype=np.float32))
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert ok
    r = api.post(
        "/v1/faces/insert",
        data={"id": "crop_1", "tenant": "acme", "aligned": "true"},
        files={"file": ("c.png", png.tobytes())},
    )
    assert r.status_code == 200, r.text
    assert r.json()["imageQualityAssessment"]["spoof"] is None  # not judged on a tight crop
    assert r.json()["imageQualityAssessment"]["skipped_checks"] == ["spoof"]  # and the answer says so
    assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == ["crop_1"]


def test_url_safe_unpadded_base64_is_read_like_the_ml_service_reads_it(api, photos, people):
    # One decoder for both services: what the ML service accepts, the Face API accepts too.
    text = base64.urlsafe_b64encode(photos(people[0].enrol_photo)).decode().rstrip("=")
    r = api.post("/v1/faces/insert", data={"id": "emp_b64", "tenant": "acme", "image_b64": text})
    assert r.status_code == 200, r.text
    r = api.post("/v1/faces/search", data={"tenant": "acme", "image_b64": text})
    assert [m["id"] for m in r.json()["searchResult"]["matches"]][:1] == ["emp_b64"]
