"""faces=all on /v1/analyze and its batch: every usable face checked and embedded in the one pass."""

from __future__ import annotations

import numpy as np
import pytest

from tests.inference.conftest import derived_service

RAW = {"content-type": "image/jpeg"}


def _analyze(client, data: bytes, **params):
    r = client.post("/v1/analyze", params=params, content=data, headers=RAW)
    assert r.status_code == 200, r.text
    return r.json()


def test_group_photo_answers_every_face_largest_first(client, photo_bytes):
    body = _analyze(client, photo_bytes("selfie-many-people.jpg"), faces="all")
    faces = body["faces"]
    assert len(faces) == 6 == body["faces_count"]
    areas = [f["face"]["area_fraction"] for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert "multiple_faces" not in body["reasons"]
    for f in faces:
        vector = np.array(f["embedding"])
        assert vector.shape == (512,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
        assert f["spoof"] is not None and f["blur"] is not None
        assert len(f["face"]["landmarks"]) == 5 and f["face"]["pose"] is not None
    # Different people: no two faces of the photo are the same vector.
    vectors = np.array([f["embedding"] for f in faces])
    similarity = vectors @ vectors.T
    assert (similarity[~np.eye(len(faces), dtype=bool)] < 0.5).all()
    # The first face is the subject face of the photo.
    assert faces[0]["face"] == body["face"]
    assert faces[0]["embedding"] == body["embedding"]


def test_each_face_embeds_as_it_would_alone(client, photo_bytes):
    """The subject face embeds in the group pass as in the single-face pass (with faces=all the
    face is found by the full-size detection, whose landmarks differ by a pixel or two from the coarse pass
    faces=largest keeps, hence the tolerance)."""
    data = photo_bytes("couple.jpg")
    every = _analyze(client, data, faces="all")
    alone = _analyze(client, data)
    assert alone["faces"] is None
    assert float(np.dot(every["faces"][0]["embedding"], alone["embedding"])) > 0.95


def test_the_labelled_person_is_found_among_the_faces(client, photo_bytes):
    person = np.array(_analyze(client, photo_bytes("img2.jpg"))["embedding"])
    faces = _analyze(client, photo_bytes("couple.jpg"), faces="all")["faces"]
    scores = [float(np.dot(person, f["embedding"])) for f in faces]
    assert scores[0] > 0.6 and scores[1] < 0.35, scores


def test_max_faces_caps_the_answer(service, photo_bytes):
    from fastapi.testclient import TestClient

    from faceauth.inference.app import create_app

    settings, capped = derived_service(service, max_faces=2)
    with TestClient(create_app(settings, service=capped)) as c:
        body = _analyze(c, photo_bytes("selfie-many-people.jpg"), faces="all")
    assert len(body["faces"]) == 2 and body["faces_count"] == 6


def test_batch_takes_faces_all(client, photo_bytes):
    files = [("files", (n, photo_bytes(n), "image/jpeg")) for n in ("couple.jpg", "img1.jpg")]
    r = client.post("/v1/analyze/batch", params={"faces": "all"}, files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [len(item["analysis"]["faces"]) for item in results] == [2, 1]


def test_bad_faces_value_is_a_422(client, photo_bytes):
    r = client.post("/v1/analyze", params={"faces": "some"}, content=photo_bytes("img1.jpg"), headers=RAW)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
