"""/v1/faces/verify against an enrolled subject (reference_subject_id): each probe scores its best face."""

from __future__ import annotations

import numpy as np

from tests.apitest import search


def _files(images):
    return [("probes", (f"{i}.jpg", image)) for i, image in enumerate(images)]


def test_verify_against_a_subject_takes_its_best_face(api, people, photos):
    person = max(people, key=lambda p: len(p.photos))
    assert len(person.photos) >= 3
    for i, name in enumerate(person.photos[:2]):
        r = api.post(
            "/v1/faces/insert",
            data={"id": f"alice_{i}", "tenant": "acme", "subject_id": "alice"},
            files={"file": ("p.jpg", photos(name))},
        )
        assert r.status_code == 200, r.text
    probe = photos(person.photos[2])
    data = {"tenant": "acme", "reference_subject_id": "alice"}
    r = api.post("/v1/faces/verify", data=data, files=_files([probe]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matched"] is True and body["reference"]["type"] == "subject" and body["reference"]["id"] == "alice"
    # The probe's score is that of the subject's best-matching face, as a search by face gives it.
    by_face = search(api, "acme", probe, threshold=0.0, top_k=5).json()["searchResult"]["matches"]
    best = max(m["score"] for m in by_face if m["subject_id"] == "alice")
    assert np.isclose(body["probes"][0]["score"], best, atol=1e-4)

    impostor = next(p for p in people if p is not person)
    r = api.post("/v1/faces/verify", data=data, files=_files([photos(impostor.probe_photo)]))
    assert r.json()["matched"] is False and r.json()["probes"][0]["reason"] == "below_threshold"


def test_subject_reference_errors(api, people, photos):
    probe = _files([photos(people[0].probe_photo)])
    r = api.post("/v1/faces/verify", data={"tenant": "acme", "reference_subject_id": "ghost"}, files=probe)
    assert r.status_code == 404 and r.json()["error"]["code"] == "subject_not_found"
    r = api.post("/v1/faces/verify", data={"reference_subject_id": "ghost"}, files=probe)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_reference"
    both = {"tenant": "acme", "reference_subject_id": "a", "reference_id": "b"}
    r = api.post("/v1/faces/verify", data=both, files=probe)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_reference"
