"""`POST /v1/analyze/batch` with the real models: per-image answers equal /v1/analyze, one bad file fails only
itself, limits, pool accounting; and the client's batch, detect and aligned calls against the real service."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceauth.inference.app import create_app
from faceauth.inference.pipeline import Pipeline
from faceauth.inference.runtime import ComputePool
from faceauth.inference.service import InferenceService
from faceauth.ml_client import Analysis, MLClient, MLImageRejected
from tests.inference.conftest import derived_service

PHOTOS = ["img1.jpg", "img2.jpg", "img11.jpg", "img20.jpg", "couple.jpg", "img33.jpg"]


def _files(*blobs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.jpg", blob, "image/jpeg")) for i, blob in enumerate(blobs)]


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def _assert_same_analysis(batched: dict, alone: dict) -> None:
    assert batched["passed"] == alone["passed"] and batched["reasons"] == alone["reasons"]
    assert batched["face_detected"] == alone["face_detected"] and batched["faces_count"] == alone["faces_count"]
    assert batched["skipped_checks"] == alone["skipped_checks"]
    for check in ("nsfw", "spoof", "blur"):
        if alone[check] is None:
            assert batched[check] is None
        else:
            assert batched[check]["probability"] == pytest.approx(alone[check]["probability"], abs=2e-4), check
    assert batched["face"] == alone["face"]
    assert batched["model_id"] == alone["model_id"] and batched["models"] == alone["models"]
    if alone["embedding"] is None:
        assert batched["embedding"] is None
    else:
        assert float(np.dot(batched["embedding"], alone["embedding"])) > 0.9999
    # The same body as /v1/analyze, without requestId (timings differ, their steps do not).
    assert set(batched) == set(alone) - {"requestId"}
    assert set(batched["timings_ms"]) == set(alone["timings_ms"])


def test_batch_answers_equal_analyze_one_by_one(client, photo_bytes):
    blobs = [photo_bytes(name) for name in PHOTOS]
    r = client.post("/v1/analyze/batch", files=_files(*blobs))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requestId"] == r.headers["x-request-id"]
    assert [item["index"] for item in body["results"]] == list(range(len(PHOTOS)))
    for item, blob in zip(body["results"], blobs, strict=True):
        assert item["ok"] is True and "error" not in item
        alone = client.post("/v1/analyze", content=blob, headers={"content-type": "image/jpeg"}).json()
        _assert_same_analysis(item["analysis"], alone)


def test_one_bad_file_fails_only_itself(client, photo_bytes):
    good = photo_bytes("img2.jpg")
    truncated = photo_bytes("img3.jpg")[:50_000]
    r = client.post("/v1/analyze/batch", files=_files(b"not a photo", good, truncated, b"", good))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [item["ok"] for item in results] == [False, True, False, False, True]
    assert results[0]["error"] == {
        "code": "invalid_image",
        "message": "the data is not an image in a supported format",
        "status": 422,
    }
    assert results[2]["error"]["code"] == "image_truncated" and results[2]["error"]["status"] == 422
    assert results[3]["error"]["code"] == "empty_image" and results[3]["error"]["status"] == 400
    assert "analysis" not in results[0]
    assert results[1]["analysis"]["embedding"] == results[4]["analysis"]["embedding"]
    # A photo without a face is an answer (like /v1/analyze), not an error.
    assert results[1]["analysis"]["face_detected"] is True


def test_limits_of_a_batch(service, photo_bytes):
    settings, svc = derived_service(service, max_batch=3, max_image_bytes=400_000)
    small, big = photo_bytes("img2.jpg"), photo_bytes("img3.jpg")  # 347 kB and 662 kB
    with TestClient(create_app(settings, service=svc)) as c:
        tiny = photo_bytes("img12.jpg")  # 20 kB: four of them fit the body limit, but not the batch
        _error(c.post("/v1/analyze/batch", files=_files(tiny, tiny, tiny, tiny)), 413, "batch_too_large")
        # A file over max_image_bytes is refused on its own.
        results = c.post("/v1/analyze/batch", files=_files(small, big)).json()["results"]
        assert results[0]["ok"] is True
        assert results[1]["error"]["code"] == "payload_too_large" and results[1]["error"]["status"] == 413
        # Three images fit the batch route's body limit, far above the single-image one.
        three = _files(small, small, small)
        assert c.post("/v1/analyze/batch", files=three).status_code == 200
        _error(c.post("/v1/analyze", files=three), 413, "payload_too_large")
        _error(c.post("/v1/analyze/batch", files=[("file", ("a.jpg", small, "image/jpeg"))]), 422, "validation_error")
        _error(
            c.post("/v1/analyze/batch", content=small, headers={"content-type": "image/jpeg"}),
            415,
            "unsupported_media_type",
        )
        _error(c.post("/v1/analyze/batch?aligned=maybe", files=_files(small)), 422, "validation_error")
        # The whole body over max_batch x max_image_bytes: refused from Content-Length before it is read.
        _error(
            c.post(
                "/v1/analyze/batch",
                content=bytes(1_400_000),
                headers={"content-type": "multipart/form-data; boundary=x"},
            ),
            413,
            "payload_too_large",
        )


def _own_pool(service: InferenceService, workers: int, max_queue: int) -> tuple[InferenceService, ComputePool]:
    pool = ComputePool(workers=workers, max_queue=max_queue)
    return InferenceService(Pipeline(service.pipeline.models, service.settings), pool, service.settings), pool


def test_a_batch_takes_one_unit_of_capacity_per_image(service, photo_bytes):
    svc, pool = _own_pool(service, workers=1, max_queue=2)  # capacity 3
    release = threading.Event()
    # One slot taken by a job that waits, as a slow request in progress would: 2 units are left.
    occupant = threading.Thread(target=lambda: asyncio.run(pool.run(release.wait)))
    occupant.start()
    try:
        deadline = time.monotonic() + 5
        while pool.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with TestClient(create_app(service.settings, service=svc)) as c:
            blob = photo_bytes("img2.jpg")
            r = c.post("/v1/analyze/batch", files=_files(blob, blob, blob))
            _error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1" and pool.rejected == 1
            release.set()
            occupant.join(timeout=5)
            assert pool.in_flight == 0
            assert c.post("/v1/analyze/batch", files=_files(blob, blob, blob)).status_code == 200
            assert pool.in_flight == 0
    finally:
        release.set()
        occupant.join(timeout=5)
        pool.shutdown()


def test_a_batch_larger_than_the_pool_runs_when_the_pool_is_idle(service, photo_bytes):
    svc, pool = _own_pool(service, workers=1, max_queue=0)
    try:
        with TestClient(create_app(service.settings, service=svc)) as c:
            blob = photo_bytes("img2.jpg")
            r = c.post("/v1/analyze/batch", files=_files(blob, blob, blob))
        assert r.status_code == 200 and all(item["ok"] for item in r.json()["results"])
    finally:
        pool.shutdown()


def test_openapi_documents_the_batch_route(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/analyze/batch"]["post"]
    schema = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["files"]["type"] == "array"
    assert {p["name"] for p in post["parameters"]} == {"aligned", "faces"}
    assert "aligned" in {p["name"] for p in spec["paths"]["/v1/embed"]["post"]["parameters"]}
    assert "centred on a black square" in spec["paths"]["/v1/analyze"]["post"]["description"]


# -- the client, against the real `faceauth ml` process --------------------------------------------------------


def test_client_batch_detect_and_aligned_against_the_real_service(ml_service, photo_bytes):
    blobs = [photo_bytes("img1.jpg"), b"not a photo", photo_bytes("couple.jpg")]

    async def run():
        client = MLClient(ml_service.url, token=ml_service.token)
        try:
            batch = await client.analyze_batch(blobs, request_id="batch-1")
            alone = await client.analyze(blobs[0])
            detected = await client.detect(blobs[2], request_id="detect-1")
            aligned = await client.analyze(blobs[0], aligned=True)
            empty = await client.analyze_batch([])
            with pytest.raises(MLImageRejected) as refused:
                await client.detect(b"not a photo")
            return batch, alone, detected, aligned, empty, refused.value
        finally:
            await client.aclose()

    batch, alone, detected, aligned, empty, refused = asyncio.run(run())
    assert len(batch) == 3 and isinstance(batch[0], Analysis) and isinstance(batch[2], Analysis)
    assert float(batch[0].embedding @ alone.embedding) > 0.9999 and batch[0].reasons == alone.reasons
    assert isinstance(batch[1], MLImageRejected)
    assert (batch[1].status, batch[1].code) == (422, "invalid_image")
    assert detected["faces_count"] == len(detected["faces"]) >= 2 and "requestId" not in detected
    assert aligned.spoof is None and aligned.face_detected and aligned.faces_count == 1
    assert empty == []
    assert (refused.status, refused.code) == (422, "invalid_image")
