"""Fixing identities: rename a subject, merge two, move one face; every face stays findable under its new name."""

from __future__ import annotations

from tests.apitest import search, stored_keys


def _enrol(api, subject, face_id, image):
    r = api.post(
        "/v1/faces/insert",
        data={"id": face_id, "tenant": "acme", "subject_id": subject},
        files={"file": ("p.jpg", image)},
    )
    assert r.status_code == 200, r.text


def _subjects_found(api, image) -> list[str]:
    r = search(api, "acme", image, group_by="subject")
    assert r.status_code == 200, r.text
    return [m["subject_id"] for m in r.json()["searchResult"]["matches"]]


def _face_ids(api, subject) -> list[str]:
    r = api.get(f"/v1/subjects/{subject}", params={"tenant": "acme"})
    return [f["face_id"] for f in r.json()["faces"]] if r.status_code == 200 else []


def test_rename_keeps_every_face_findable_under_the_new_name(api, people, photos):
    person = people[0]
    _enrol(api, "temp_1", "f_a", photos(person.photos[0]))
    _enrol(api, "temp_1", "f_b", photos(person.photos[1]))
    keys_before = len(stored_keys(api, "acme/"))
    r = api.post("/v1/subjects/temp_1/rename", params={"tenant": "acme", "new_subject_id": "alice"})
    assert r.status_code == 200, r.text
    assert [f["face_id"] for f in r.json()["faces"]] == ["f_a", "f_b"]
    assert all(f["subject_id"] == "alice" for f in r.json()["faces"])
    assert _face_ids(api, "temp_1") == []
    for name in person.photos[:2]:
        assert _subjects_found(api, photos(name)) == ["alice"]
    assert len(stored_keys(api, "acme/")) == keys_before  # each face kept one image (the moved revision's)
    # Onto a subject that has faces: 409, merge is the operation for that.
    _enrol(api, "bob", "f_c", photos(people[1].enrol_photo))
    r = api.post("/v1/subjects/alice/rename", params={"tenant": "acme", "new_subject_id": "bob"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "subject_exists"
    r = api.post("/v1/subjects/ghost/rename", params={"tenant": "acme", "new_subject_id": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "subject_not_found"


def test_merge_moves_the_faces_into_the_other_subject(api, people, photos):
    person = people[0]
    _enrol(api, "alice", "f_a", photos(person.photos[0]))
    _enrol(api, "alice_dup", "f_b", photos(person.photos[1]))
    r = api.post("/v1/subjects/alice_dup/merge", params={"tenant": "acme", "into": "alice"})
    assert r.status_code == 200, r.text
    assert r.json()["subject_id"] == "alice" and _face_ids(api, "alice") == ["f_a", "f_b"]
    assert _face_ids(api, "alice_dup") == []
    assert _subjects_found(api, photos(person.photos[1])) == ["alice"]
    r = api.get("/v1/faces/get/f_b", params={"tenant": "acme"})
    assert r.json()["subject_id"] == "alice"
    for into, code in (("ghost", 404), ("alice", 404)):  # alice_dup has no faces any more
        r = api.post("/v1/subjects/alice_dup/merge", params={"tenant": "acme", "into": into})
        assert r.status_code == code
    r = api.post("/v1/subjects/alice/merge", params={"tenant": "acme", "into": "alice"})
    assert r.status_code == 422


def test_move_one_face_and_the_subject_size_limit(make_api, people, photos):
    with make_api(max_faces_per_subject=2) as api:
        _enrol(api, "alice", "f_a", photos(people[0].photos[0]))
        _enrol(api, "alice", "f_b", photos(people[0].photos[1]))
        _enrol(api, "bob", "f_c", photos(people[1].enrol_photo))
        _enrol(api, "carol", "f_d", photos(people[2].enrol_photo))
        # f_b was enrolled under the wrong person: move it to bob.
        r = api.post("/v1/subjects/bob/move-face", params={"tenant": "acme", "face_id": "f_b"})
        assert r.status_code == 200, r.text
        assert [f["face_id"] for f in r.json()["faces"]] == ["f_b", "f_c"]
        assert _face_ids(api, "alice") == ["f_a"]
        # bob is full: a third face is refused, and nothing moved.
        r = api.post("/v1/subjects/bob/move-face", params={"tenant": "acme", "face_id": "f_d"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "subject_face_limit"
        assert _face_ids(api, "carol") == ["f_d"]
        r = api.post("/v1/subjects/bob/move-face", params={"tenant": "acme", "face_id": "ghost"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "face_not_found"
        r = api.post("/v1/subjects/bob/move-face", params={"tenant": "acme", "face_id": "bad id!"})
        assert r.status_code == 422
