"""Search by a stored face id and by a given embedding; delete a list of face ids."""

from __future__ import annotations

import numpy as np

from tests.apitest import enrol


def _enrol_two_photos_of_one_person_and_others(api, people, photos):
    person = people[0]
    assert enrol(api, "acme", "p_a", photos(person.photos[0])).status_code == 200
    r = api.post(
        "/v1/faces/insert", data={"id": "p_b", "tenant": "acme"}, files={"file": ("p.jpg", photos(person.photos[1]))}
    )
    assert r.status_code == 200, r.text
    for i, other in enumerate(people[1:4]):
        assert enrol(api, "acme", f"o_{i}", photos(other.enrol_photo)).status_code == 200


def test_search_by_face_id_finds_the_persons_other_photo_and_not_itself(api, people, photos):
    _enrol_two_photos_of_one_person_and_others(api, people, photos)
    r = api.post("/v1/faces/search/by-face", json={"tenant": "acme", "face_id": "p_a"})
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["searchResult"]["matches"]] == ["p_b"]
    r = api.post("/v1/faces/search/by-face", json={"tenant": "acme", "face_id": "p_a", "threshold": 0.0, "top_k": 10})
    ids = [m["id"] for m in r.json()["searchResult"]["matches"]]
    # Threshold 0: every other face with a positive score, the person's own first, never the query itself.
    assert ids[0] == "p_b" and set(ids) <= {"p_b", "o_0", "o_1", "o_2"}
    r = api.post("/v1/faces/search/by-face", json={"tenant": "acme", "face_id": "ghost"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "face_not_found"
    # Another tenant's face id is not found in this one.
    r = api.post("/v1/faces/search/by-face", json={"tenant": "other", "face_id": "p_a"})
    assert r.status_code == 404


def test_search_by_embedding_of_the_models_dimension(api, people, photos, ml_service):
    _enrol_two_photos_of_one_person_and_others(api, people, photos)
    probe = api.post(
        "/v1/faces/search", data={"tenant": "acme"}, files={"file": ("q.jpg", photos(people[0].photos[1]))}
    )
    model_id = probe.json()["searchResult"]["model_id"]
    vector = np.asarray(api.portal.call(_embedding_of, api, "acme", "p_b", model_id))
    r = api.post("/v1/faces/search/by-embedding", json={"tenant": "acme", "embedding": (vector * 3).tolist()})
    assert r.status_code == 200, r.text
    result = r.json()["searchResult"]
    assert [m["id"] for m in result["matches"]][:2] == ["p_b", "p_a"] and result["model_id"] == model_id
    assert result["matches"][0]["score"] > 0.99  # scaled, then normalised: the same direction
    for bad in ([0.1] * 10, [0.0] * 512):
        r = api.post("/v1/faces/search/by-embedding", json={"tenant": "acme", "embedding": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_embedding", r.text
    r = api.post(
        "/v1/faces/search/by-embedding", json={"tenant": "acme", "embedding": vector.tolist(), "model_id": "x"}
    )
    assert r.json()["searchResult"]["matches"] == []  # another model's space: nothing is comparable


async def _embedding_of(api, tenant, face_id, model_id):
    stored = await api.app.state.container.index.vectors(tenant, model_id=model_id, face_id=face_id, max_rows=10)
    return stored.embeddings[0]


def test_delete_many_deletes_and_reports_unknown_ids(api, people, photos):
    _enrol_two_photos_of_one_person_and_others(api, people, photos)
    r = api.post("/v1/faces/delete-many", json={"tenant": "acme", "ids": ["p_a", "ghost", "o_0", "p_a"]})
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == ["p_a", "o_0"] and r.json()["not_found"] == ["ghost"]
    assert api.get("/v1/faces/get/p_a", params={"tenant": "acme"}).status_code == 404
    assert api.get("/v1/faces/get/p_b", params={"tenant": "acme"}).status_code == 200
    for body in ({"tenant": "acme", "ids": []}, {"tenant": "acme", "ids": ["bad id!"]}, {"tenant": "acme"}):
        r = api.post("/v1/faces/delete-many", json=body)
        assert r.status_code == 422 and r.json()["requestId"], r.text
    r = api.post("/v1/faces/delete-many", json={"tenant": "acme", "ids": [f"f{i}" for i in range(500)]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"


def test_a_body_that_is_not_json_is_a_4xx(api):
    for path in ("/v1/faces/delete-many", "/v1/faces/search/by-face", "/v1/faces/search/by-embedding"):
        r = api.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["requestId"], (path, r.text)
