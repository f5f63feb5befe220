"""Subjects: one person with several faces; found from a new photo, listed page by page, deleted whole."""

from __future__ import annotations

import pytest

from tests.apitest import enrol, search, stored_keys


def _enrol_subject(api, tenant, subject, face_id, image):
    return api.post(
        "/v1/faces/insert",
        data={"id": face_id, "tenant": tenant, "subject_id": subject},
        files={"file": ("p.jpg", image)},
    )


@pytest.fixture
def richest(people):
    """The person with the most usable photos: up to 3 enrolled, one more as the probe."""
    person = max(people, key=lambda p: len(p.photos))
    assert len(person.photos) >= 3, "need a person with three usable photos"
    return person


def test_a_subject_with_several_faces_is_found_from_another_photo(api, richest, people, photos):
    enrolled, probe = richest.photos[:-1][:3], richest.photos[-1]
    for i, name in enumerate(enrolled):
        assert _enrol_subject(api, "acme", "alice", f"alice_{i}", photos(name)).status_code == 200
    others = [p for p in people if p is not richest][:2]
    for i, person in enumerate(others):
        assert enrol(api, "acme", f"other_{i}", photos(person.enrol_photo)).status_code == 200

    r = search(api, "acme", photos(probe), group_by="subject")
    matches = r.json()["searchResult"]["matches"]
    assert [m["subject_id"] for m in matches] == ["alice"], matches
    assert matches[0]["id"] in {f"alice_{i}" for i in range(len(enrolled))}
    by_face = search(api, "acme", photos(probe), threshold=0.0, top_k=10).json()["searchResult"]["matches"]
    assert matches[0]["score"] == max(m["score"] for m in by_face if m["subject_id"] == "alice")

    body = api.get("/v1/subjects/alice", params={"tenant": "acme"}).json()
    assert [f["face_id"] for f in body["faces"]] == [f"alice_{i}" for i in range(len(enrolled))]
    assert all(f["subject_id"] == "alice" for f in body["faces"])


def test_subjects_are_listed_with_cursor_pages(api, people, photos):
    image = photos(people[0].enrol_photo)
    for subject in ("s3", "s1", "s2", "s5", "s4"):
        assert _enrol_subject(api, "acme", subject, f"{subject}_a", image).status_code == 200
    assert _enrol_subject(api, "acme", "s2", "s2_b", image).status_code == 200
    assert enrol(api, "other", "x", image).status_code == 200

    pages, cursor = [], None
    while True:
        params = {"tenant": "acme", "limit": 2} | ({"cursor": cursor} if cursor else {})
        body = api.get("/v1/subjects", params=params).json()
        pages.append([(s["subject_id"], [f["face_id"] for f in s["faces"]]) for s in body["subjects"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        [("s1", ["s1_a"]), ("s2", ["s2_a", "s2_b"])],
        [("s3", ["s3_a"]), ("s4", ["s4_a"])],
        [("s5", ["s5_a"])],
    ]
    r = api.get("/v1/subjects", params={"tenant": "acme", "cursor": "!!!"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"


def test_deleting_a_subject_removes_all_its_faces_and_images(api, people, photos):
    for i in range(3):
        assert _enrol_subject(api, "acme", "bob", f"bob_{i}", photos(people[0].photos[i % 2])).status_code == 200
    assert enrol(api, "acme", "carol", photos(people[1].enrol_photo)).status_code == 200

    r = api.delete("/v1/subjects/bob", params={"tenant": "acme"})
    assert r.status_code == 200, r.text
    assert r.json()["deleted_faces"] == ["bob_0", "bob_1", "bob_2"]
    assert [k.split("/")[1] for k in stored_keys(api, "acme/")] == ["carol"]
    assert api.get("/v1/subjects/bob", params={"tenant": "acme"}).status_code == 404
    assert api.delete("/v1/subjects/bob", params={"tenant": "acme"}).json()["error"]["code"] == "subject_not_found"
    assert api.delete("/v1/subjects/carol", params={"tenant": "other"}).status_code == 404


def test_a_subject_holds_at_most_the_configured_number_of_faces(make_api, people, photos):
    with make_api(max_faces_per_subject=2) as api:
        image = photos(people[0].enrol_photo)
        assert _enrol_subject(api, "acme", "dan", "dan_0", image).status_code == 200
        assert _enrol_subject(api, "acme", "dan", "dan_1", image).status_code == 200
        r = _enrol_subject(api, "acme", "dan", "dan_2", image)
        assert r.status_code == 409 and r.json()["error"]["code"] == "subject_face_limit"
        # Replacing one of its faces is not a new face.
        r = api.post(
            "/v1/faces/upsert",
            data={"id": "dan_1", "tenant": "acme", "subject_id": "dan"},
            files={"file": ("p", image)},
        )
        assert r.status_code == 200
