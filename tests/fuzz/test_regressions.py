"""Plain regression tests for what the OpenAPI fuzzing found (each was a schemathesis failure first)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from faceauth.config import MLSettings
from faceauth.inference.app import create_app as create_ml_app
from faceauth.inference.service import InferenceService
from tests.fuzz import ML_TOKEN

IMAGE_ENDPOINTS = ["/v1/embed", "/v1/nsfw", "/v1/spoof", "/v1/blur", "/v1/assess", "/v1/analyze", "/v1/detect"]


@pytest.fixture
def ml(fuzz_ml: tuple[MLSettings, InferenceService]) -> Iterator[TestClient]:
    settings, service = fuzz_ml
    with TestClient(create_ml_app(settings, service=service)) as client:
        client.headers["Authorization"] = f"Bearer {ML_TOKEN}"
        yield client


def _error_code(response) -> str:
    return response.json()["error"]["code"]


def test_ml_batch_with_a_text_part_for_a_file_is_refused_whole(ml, photos, people):
    photo = photos(people[0].enrol_photo)
    r = ml.post("/v1/analyze/batch", files=[("files", ("a.jpg", photo, "image/jpeg"))], data={"files": "{}"})
    assert r.status_code == 422 and _error_code(r) == "validation_error", r.text
    # Only files: as before, each is judged on its own.
    r = ml.post("/v1/analyze/batch", files=[("files", ("a.jpg", photo)), ("files", ("b.jpg", b"not a photo"))])
    assert r.status_code == 200 and [item["ok"] for item in r.json()["results"]] == [True, False]


def test_ml_errors_are_documented_with_their_body(ml):
    spec = ml.get("/openapi.json").json()
    assert set(spec["components"]["schemas"]["ErrorResponse"]["required"]) == {"requestId", "error"}
    for path in [*IMAGE_ENDPOINTS, "/v1/analyze/batch"]:
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "401", "413", "415", "422", "503"} <= set(responses), path
        for status in ("400", "401", "413", "415", "422", "503"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
        assert "image/*" in spec["paths"][path]["post"]["requestBody"]["content"] or path == "/v1/analyze/batch"
    r = ml.post("/v1/embed", content=b"x", headers={"Authorization": "Bearer wrong", "Content-Type": "image/png"})
    assert r.status_code == 401 and _error_code(r) == "unauthorized"


def test_405_names_every_method_of_the_path(ml, api):
    r = ml.options("/v1/embed")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and _error_code(r) == "method_not_allowed"
    # GET and DELETE of one path are two routes; the router alone names only the first one's method.
    r = api.put("/v1/subjects/someone", params={"tenant": "t1"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"
    r = api.options("/v1/tenants/t1")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE"


def test_face_api_documents_the_400s_it_answers(api):
    paths = api.get("/openapi.json").json()["paths"]

    r = api.post("/v1/faces/detect", data={"image_b64": "!not base64!"})
    assert r.status_code == 400 and _error_code(r) == "invalid_base64"
    r = api.post("/v1/faces/search", data={"tenant": "t1", "image_b64": "!not base64!"})
    assert r.status_code == 400 and _error_code(r) == "invalid_base64"
    r = api.post("/v1/faces/batch/insert", data={"tenant": "t1", "ids": ["a"]}, files=[("files", ("a.jpg", b""))])
    assert r.status_code == 400 and _error_code(r) == "empty_image"
    r = api.post("/v1/faces/cluster", content=b'{"tenant": "\xff"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and _error_code(r) == "bad_request"
    for path in ("/v1/faces/detect", "/v1/faces/search", "/v1/faces/batch/insert", "/v1/faces/cluster"):
        assert "400" in paths[path]["post"]["responses"], path
    for path in ("/v1/faces/insert", "/v1/faces/upsert", "/v1/faces/search", "/v1/faces/detect", "/v1/faces/verify"):
        assert "415" in paths[path]["post"]["responses"], path  # image_url_not_image
