"""Batch enrolment: every item answers for itself; one bad photo never fails the others."""

from __future__ import annotations

from tests.apitest import match_ids, search, stored_keys


def _batch(api, ids, images, **data):
    files = [("files", (f"{i}.jpg", image)) for i, image in enumerate(images)]
    return api.post("/v1/faces/batch/insert", data={"tenant": "acme", "ids": ids, **data}, files=files)


def test_a_batch_with_one_bad_photo_enrols_the_others(api, people, photos):
    ids = ["emp_0", "bad", "emp_2", "emp_3"]
    images = [photos(people[0].enrol_photo), b"\xff\xd8\xff not really a jpeg", photos(people[2].enrol_photo)]
    images.append(photos(people[3].enrol_photo))
    r = _batch(api, ids, images)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["succeeded"] == 3 and body["failed"] == 1, [x["error"] for x in body["results"]]
    statuses = {item["id"]: item["status"] for item in body["results"]}
    assert statuses == {"emp_0": 200, "bad": 422, "emp_2": 200, "emp_3": 200}
    bad = body["results"][1]
    assert bad["index"] == 1 and bad["error"]["code"] and bad["face"] is None
    assert body["results"][0]["face"]["face_id"] == "emp_0"
    assert body["results"][0]["imageQualityAssessment"]["passed"] is True

    for i in (0, 2, 3):
        assert match_ids(search(api, "acme", photos(people[i].probe_photo)))[:1] == [f"emp_{i}"]
    assert not any("/bad/" in key for key in stored_keys(api))


def test_batch_items_fail_alone_for_taken_repeated_and_faceless(api, people, photos):
    assert _batch(api, ["emp_0"], [photos(people[0].enrol_photo)]).json()["succeeded"] == 1
    r = _batch(
        api,
        ["emp_0", "emp_1", "emp_1", "blank"],
        [photos(people[0].probe_photo), photos(people[1].enrol_photo), photos(people[1].probe_photo), _blank_png()],
    )
    results = r.json()["results"]
    assert [(x["id"], x["status"]) for x in results] == [("emp_0", 409), ("emp_1", 200), ("emp_1", 422), ("blank", 422)]
    assert results[0]["error"]["code"] == "face_already_exists"
    assert results[2]["error"]["code"] == "duplicate_id_in_batch"
    assert results[3]["error"]["code"] == "no_face_detected"
    # upsert=true replaces instead.
    r = _batch(api, ["emp_0"], [photos(people[0].probe_photo)], upsert="true")
    assert r.json()["results"][0]["status"] == 200


def test_batch_limits_and_pairing_are_checked_before_any_work(make_api, people, photos):
    with make_api(max_batch=2) as api:
        r = _batch(api, ["a", "b", "c"], [photos(people[0].enrol_photo)] * 3)
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
        r = _batch(api, ["a", "b"], [photos(people[0].enrol_photo)])
        assert r.status_code == 422 and r.json()["error"]["code"] == "batch_mismatch"
        r = _batch(api, ["a", "bad/id"], [photos(people[0].enrol_photo)] * 2)
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "ids[1]"
        assert stored_keys(api) == []


def test_batch_photos_by_url(make_api, people, photos, server):
    server.files["/a.jpg"] = photos(people[0].enrol_photo)
    with make_api(image_url_allowed_hosts="127.0.0.1") as api:
        r = api.post(
            "/v1/faces/batch/insert",
            data={
                "tenant": "acme",
                "ids": ["emp_0", "emp_x"],
                "image_urls": [server.url("/a.jpg"), server.url("/x.jpg")],
            },
        )
        assert [x["status"] for x in r.json()["results"]] == [200, 422]
        assert r.json()["results"][1]["error"]["code"] == "image_url_unreachable"


def _blank_png() -> bytes:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".png", np.full((200, 200, 3), 200, np.uint8))
    assert ok
    return data.tobytes()
