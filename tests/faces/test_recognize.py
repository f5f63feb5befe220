"""/v1/faces/recognize: every face of a group photo, each searched in the tenant; /v1/faces/detect faces=."""

from __future__ import annotations

from tests.apitest import enrol

# The person of the labelled photo img2.jpg is the larger face of couple.jpg and the third-largest of
# selfie-many-people.jpg (found by embedding every photo; the group photos are not in master.csv).
PERSON_PHOTO = "img2.jpg"


def _recognize(api, tenant: str, image: bytes, **params):
    r = api.post("/v1/faces/recognize", data={"tenant": tenant}, files={"file": ("g.jpg", image)}, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requestId"] == r.headers["x-request-id"]
    return body["recognizeResult"]


def _enrol_person_and_others(api, people, photos) -> None:
    assert enrol(api, "acme", "jolie", photos(PERSON_PHOTO)).status_code == 200
    others = [p for p in people if PERSON_PHOTO not in p.photos][:3]
    for i, person in enumerate(others):
        assert enrol(api, "acme", f"other_{i}", photos(person.enrol_photo)).status_code == 200


def test_a_group_photo_answers_one_entry_per_face_and_finds_the_enrolled_person(api, people, photos):
    _enrol_person_and_others(api, people, photos)
    result = _recognize(api, "acme", photos("selfie-many-people.jpg"))
    faces = result["faces"]
    assert len(faces) == 6
    areas = [f["face"]["area_fraction"] for f in faces]
    assert areas == sorted(areas, reverse=True)
    matched = {i: [m["id"] for m in f["matches"]] for i, f in enumerate(faces) if f["matches"]}
    assert matched == {2: ["jolie"]}, matched
    for f in faces:
        assert f["box"] == f["face"]["box"] and f["quality"]["passed"] is True

    couple = _recognize(api, "acme", photos("couple.jpg"), group_by="subject", top_k=1)
    assert [[m["subject_id"] for m in f["matches"]] for f in couple["faces"]] == [["jolie"], []]
    assert couple["group_by"] == "subject" and couple["top_k"] == 1


def test_limit_caps_the_faces_and_another_tenant_sees_nothing(api, people, photos):
    _enrol_person_and_others(api, people, photos)
    result = _recognize(api, "acme", photos("selfie-many-people.jpg"), limit=2)
    assert len(result["faces"]) == 2 and result["faces_count"] == 6
    other = _recognize(api, "elsewhere", photos("couple.jpg"))
    assert len(other["faces"]) == 2 and all(f["matches"] == [] for f in other["faces"])


def test_bad_limit_is_a_422(api, photos):
    r = api.post(
        "/v1/faces/recognize",
        data={"tenant": "acme"},
        files={"file": ("g.jpg", photos("couple.jpg"))},
        params={"limit": 0},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error" and r.json()["requestId"]


def test_detect_takes_faces_all_or_largest(api, photos):
    group = photos("selfie-many-people.jpg")
    every = api.post("/v1/faces/detect", files={"file": ("g.jpg", group)}, params={"faces": "all"}).json()
    largest = api.post("/v1/faces/detect", files={"file": ("g.jpg", group)}, params={"faces": "largest"}).json()
    assert len(every["faces"]) == 6 == every["faces_count"]
    assert largest["faces"] == every["faces"][:1] and largest["faces_count"] == 6
