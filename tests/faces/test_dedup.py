"""dedup=true: one person cannot be enrolled under two identities of a tenant (buddy punching by enrolment)."""

from __future__ import annotations

from tests.apitest import stored_rows


def _insert(api, face_id, image, tenant="acme", **data):
    return api.post(
        "/v1/faces/insert",
        data={"id": face_id, "tenant": tenant, "dedup": "true", **data},
        files={"file": ("p.jpg", image)},
    )


def test_the_same_person_under_a_second_id_is_409_naming_the_first(api, people, photos):
    assert _insert(api, "emp_1", photos(people[0].enrol_photo)).status_code == 200
    r = _insert(api, "emp_2", photos(people[0].probe_photo))
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "duplicate_face"
    assert error["details"]["matched_id"] == "emp_1" and error["details"]["score"] >= error["details"]["threshold"]
    assert stored_rows(api, "acme", "emp_2") == []


def test_dedup_lets_other_people_other_tenants_and_the_same_subject_through(api, people, photos):
    assert _insert(api, "emp_1", photos(people[0].enrol_photo), subject_id="ann").status_code == 200
    assert _insert(api, "emp_2", photos(people[1].enrol_photo)).status_code == 200
    assert _insert(api, "emp_1", photos(people[0].probe_photo), tenant="other").status_code == 200
    # A second face of the same subject is not a duplicate.
    assert _insert(api, "emp_1b", photos(people[0].probe_photo), subject_id="ann").status_code == 200
    # Without dedup the second identity is accepted (the check is opt-in).
    r = api.post(
        "/v1/faces/insert",
        data={"id": "emp_3", "tenant": "acme"},
        files={"file": ("p.jpg", photos(people[1].probe_photo))},
    )
    assert r.status_code == 200


def test_upsert_with_dedup_does_not_match_the_face_it_replaces(api, people, photos):
    assert _insert(api, "emp_1", photos(people[0].enrol_photo)).status_code == 200
    r = api.post(
        "/v1/faces/upsert",
        data={"id": "emp_1", "tenant": "acme", "dedup": "true"},
        files={"file": ("p.jpg", photos(people[0].probe_photo))},
    )
    assert r.status_code == 200, r.text
