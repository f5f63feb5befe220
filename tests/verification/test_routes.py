"""1:1 verification (/v1/faces/verify) and the /compare-faces compatibility route, with real photos."""

from __future__ import annotations

import base64
import logging

import pytest

from faceauth.config import DEFAULT_MATCH_THRESHOLD, APISettings
from tests.apitest import enrol


def _files(name, images):
    return [(name, (f"{i}.jpg", image)) for i, image in enumerate(images)]


def test_verify_accepts_the_genuine_user_and_rejects_an_impostor(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    data = {"tenant": "acme", "reference_id": "emp_1"}

    genuine = api.post("/v1/faces/verify", data=data, files=_files("probes", [photos(people[0].probe_photo)]))
    assert genuine.status_code == 200, genuine.text
    body = genuine.json()
    assert body["matched"] is True and body["matches"] == 1 and body["min_matches"] == 1
    assert body["reference"] == {"type": "face", "id": "emp_1", "imageQualityAssessment": None}
    probe = body["probes"][0]
    assert probe["matched"] and probe["score"] >= body["threshold"] == DEFAULT_MATCH_THRESHOLD
    assert probe["imageQualityAssessment"]["passed"] is True and probe["field"] == "probes[0]"

    impostor = api.post("/v1/faces/verify", data=data, files=_files("probes", [photos(people[1].probe_photo)]))
    body = impostor.json()
    assert body["matched"] is False and body["probes"][0]["reason"] == "below_threshold"
    assert body["probes"][0]["score"] < DEFAULT_MATCH_THRESHOLD


def test_verify_against_a_reference_photo_needs_min_matches_of_the_probes(api, people, photos):
    person = max(people, key=lambda p: len(p.photos))
    reference = photos(person.photos[0])
    probes = [
        photos(person.photos[1]),
        photos(person.photos[-1]),
        photos(people[0 if person is not people[0] else 1].probe_photo),
    ]
    files = [*_files("probes", probes), ("reference", ("r.jpg", reference))]

    body = api.post("/v1/faces/verify", files=files).json()
    assert [p["matched"] for p in body["probes"]] == [True, True, False]
    assert body["min_matches"] == 2 and body["matched"] is True  # more than half by default
    assert body["reference"]["type"] == "image" and body["reference"]["imageQualityAssessment"]["face_detected"]
    strict = api.post("/v1/faces/verify", data={"min_matches": "3"}, files=files).json()
    assert strict["matched"] is False and strict["matches"] == 2
    # Probes scored concurrently but reported in request order, whichever input form they came in.
    mixed = api.post(
        "/v1/faces/verify",
        data={"probes_b64": [base64.b64encode(probes[2]).decode()]},
        files=[*_files("probes", probes[:1]), ("reference", ("r.jpg", reference))],
    ).json()
    assert [p["field"] for p in mixed["probes"]] == ["probes[0]", "probes_b64[0]"]
    assert [p["matched"] for p in mixed["probes"]] == [True, False]


def test_verify_rejects_bad_parameters_with_codes(api, people, photos):
    probe = photos(people[0].probe_photo)
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    ref = {"tenant": "acme", "reference_id": "emp_1"}

    def error(data, images):
        r = api.post("/v1/faces/verify", data=data, files=_files("probes", images))
        assert 400 <= r.status_code < 500 and r.json()["requestId"], r.text
        return r.status_code, r.json()["error"]["code"]

    assert error({**ref, "threshold": "-1"}, [probe]) == (422, "validation_error")
    assert error({**ref, "threshold": "1.5"}, [probe]) == (422, "validation_error")
    assert error({**ref, "min_matches": "2"}, [probe]) == (422, "invalid_min_matches")
    assert error(ref, [probe] * 6) == (422, "invalid_probe_count")
    assert error(ref, []) == (422, "invalid_probe_count")
    assert error({"tenant": "acme"}, [probe]) == (422, "invalid_reference")
    assert error({"reference_id": "emp_1"}, [probe]) == (422, "invalid_reference")
    assert error({"tenant": "acme", "reference_id": "nobody"}, [probe]) == (404, "face_not_found")
    assert error({"tenant": "other", "reference_id": "emp_1"}, [probe]) == (404, "face_not_found")


def test_a_spoofed_or_failed_probe_never_verifies_unless_quality_is_waived(api, people, photos):
    blurred = _blurred(photos(people[0].probe_photo))
    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    data = {"tenant": "acme", "reference_id": "emp_1"}
    body = api.post("/v1/faces/verify", data=data, files=_files("probes", [blurred])).json()
    assert body["matched"] is False and body["probes"][0]["reason"] == "quality_check_failed"
    assert "blur" in body["probes"][0]["imageQualityAssessment"]["reasons"]


def test_compare_faces_answers_like_its_reference(make_api, people, photos, server):
    person = max(people, key=lambda p: len(p.photos))
    assert len(person.photos) >= 4, "need a person with four usable photos"
    for i, name in enumerate(person.photos[:4]):
        server.files[f"/p{i}.jpg"] = photos(name)
    other = next(p for p in people if p is not person)
    server.files["/other.jpg"] = photos(other.probe_photo)
    with make_api(image_url_allowed_hosts="127.0.0.1") as api:
        body = {
            "user_id": "12345",
            "front_image1": server.url("/p0.jpg"),
            "front_image2": server.url("/p1.jpg"),
            "front_image3": server.url("/p2.jpg"),
            "back_image": server.url("/p3.jpg"),
        }
        r = api.post("/compare-faces", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert {"user_id": answer["user_id"], "matched": answer["matched"]} == {"user_id": "12345", "matched": True}
        assert answer["required_matches"] == 2 and answer["matches"] == 3 and len(answer["scores"]) == 3

        one_stranger = api.post("/compare-faces", json=body | {"front_image3": server.url("/other.jpg")}).json()
        assert one_stranger["matched"] is True and one_stranger["matches"] == 2
        strict = api.post(
            "/compare-faces", json=body | {"front_image3": server.url("/other.jpg"), "min_matches": 3}
        ).json()
        assert strict["matched"] is False
        impostor = api.post("/compare-faces", json=body | {"back_image": server.url("/other.jpg")}).json()
        assert (impostor["user_id"], impostor["matched"], impostor["matches"]) == ("12345", False, 0)

        for bad in ({"threshold": -1}, {"threshold": 1.2}, {"min_matches": 1}, {"min_matches": 4}):
            r = api.post("/compare-faces", json=body | bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", bad
        r = api.post("/compare-faces", json=body | {"front_image2": server.url("/missing.jpg")})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "image_url_unreachable"
        assert r.json()["error"]["details"]["field"] == "front_image2"


def test_compare_faces_refuses_a_loopback_url_that_is_not_allowlisted(api, server, people, photos):
    server.files["/p.jpg"] = photos(people[0].enrol_photo)
    url = server.url("/p.jpg")
    r = api.post(
        "/compare-faces",
        json={"user_id": "1", "front_image1": url, "front_image2": url, "front_image3": url, "back_image": url},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "image_url_forbidden"
    assert server.requests == []


@pytest.mark.parametrize(
    ("env", "threshold", "min_matches"),
    [
        ({"FACEAUTH_VERIFY_THRESHOLD": "-1", "FACEAUTH_COMPARE_MIN_MATCHES": "1"}, DEFAULT_MATCH_THRESHOLD, 2),
        ({"FACEAUTH_VERIFY_THRESHOLD": "abc", "FACEAUTH_COMPARE_MIN_MATCHES": "7"}, DEFAULT_MATCH_THRESHOLD, 2),
        ({"FACEAUTH_VERIFY_THRESHOLD": "0.5", "FACEAUTH_COMPARE_MIN_MATCHES": "3"}, 0.5, 3),
    ],
)
def test_invalid_verification_defaults_fall_back_to_safe_values_with_a_warning(
    env, threshold, min_matches, monkeypatch, caplog
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="faceauth.config"):
        settings = APISettings(_env_file=None)
    assert settings.effective_verify_threshold == threshold
    assert settings.compare_min_matches == min_matches
    assert bool(caplog.records) == (threshold == DEFAULT_MATCH_THRESHOLD)


def _blurred(image: bytes) -> bytes:
    import cv2
    import numpy as np

    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    ok, data = cv2.imencode(".jpg", cv2.GaussianBlur(decoded, (0, 0), 8))
    assert ok
    return data.tobytes()


def test_a_probe_without_liveness_does_not_count_unless_quality_is_waived(api, people, photos):
    """aligned=true skips anti-spoofing and `passed` ignores skipped checks: such a probe matched before."""
    from tests.photos.aligned import aligned_crop

    enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
    crop = aligned_crop(api, photos(people[0].probe_photo))
    data = {"tenant": "acme", "reference_id": "emp_1", "aligned": "true"}
    body = api.post("/v1/faces/verify", data=data, files=_files("probes", [crop])).json()
    probe = body["probes"][0]
    assert probe["imageQualityAssessment"]["skipped_checks"] == ["spoof"]
    assert body["matched"] is False and probe["matched"] is False
    assert probe["reason"] == "liveness_not_checked" and probe["score"] >= body["threshold"]

    waived = {**data, "require_quality": "false"}
    body = api.post("/v1/faces/verify", data=waived, files=_files("probes", [crop])).json()
    assert body["matched"] is True and body["probes"][0]["reason"] is None
