"""The ML service's HTTP contract, with the real models: shapes, encodings, errors, auth, overload."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceauth.inference.app import create_app, load_service
from tests.inference.conftest import derived_service, ml_settings

IMAGE_ENDPOINTS = ["/v1/embed", "/v1/nsfw", "/v1/spoof", "/v1/blur", "/v1/assess", "/v1/analyze", "/v1/detect"]


def _b64(data: bytes) -> dict:
    return {"image_b64": base64.b64encode(data).decode()}


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["requestId"] and body["requestId"] == response.headers["x-request-id"]
    return body


def test_embed_json_is_a_unit_512d_vector(client, photo_bytes):
    r = client.post("/v1/embed", json=_b64(photo_bytes("img1.jpg")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["face_detected"] is True and body["embedding_dim"] == 512
    vec = np.array(body["embedding"])
    assert vec.shape == (512,)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-4)
    assert body["model_id"].startswith("buffalo_s/w600k_mbf@")
    assert body["requestId"] == r.headers["x-request-id"]
    assert body["face"]["box"][2] > body["face"]["box"][0]


def test_multipart_raw_and_json_give_the_same_embedding(client, photo_bytes):
    data = photo_bytes("img2.jpg")
    a = client.post("/v1/embed", json=_b64(data)).json()["embedding"]
    b = client.post("/v1/embed", files={"file": ("x.jpg", data, "image/jpeg")}).json()["embedding"]
    c = client.post("/v1/embed", content=data, headers={"content-type": "image/jpeg"}).json()["embedding"]
    assert a == b == c


def test_assess_live_selfie_passes(client, shared_dir):
    data = (shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes()
    body = client.post("/v1/assess", json=_b64(data)).json()
    assert body["passed"] is True, body
    assert body["nsfw"]["is_safe"] and not body["spoof"]["is_spoof"] and body["blur"]["is_sharp"]
    assert body["reasons"] == []


def test_analyze_combines_assessment_and_embedding(client, shared_dir):
    data = (shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes()
    body = client.post("/v1/analyze", files={"file": ("live.jpg", data, "image/jpeg")}).json()
    assert body["passed"] is True and len(body["embedding"]) == 512
    embed = client.post("/v1/embed", json=_b64(data)).json()
    assert np.dot(body["embedding"], embed["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert set(body["models"]) == {"detector", "embedder", "nsfw", "spoof", "blur"}
    assert {"decode", "detect", "embed"} <= set(body["timings_ms"])


def test_detect_reports_every_face_in_original_coordinates(client, photo_bytes):
    body = client.post("/v1/detect", json=_b64(photo_bytes("couple.jpg"))).json()
    assert body["faces_count"] == 2 and (body["width"], body["height"]) == (2280, 1588)
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 2280 and 0 <= y1 < y2 <= 1588
        assert len(face["landmarks"]) == 5
        assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in face["landmarks"])
        assert set(face["pose"]) == {"yaw", "pitch", "roll"}
        assert 0 < face["quality"] <= 1 and 0 < face["area_fraction"] < 1
    areas = [f["area_fraction"] for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)
    crowd = client.post("/v1/detect", json=_b64(photo_bytes("selfie-many-people.jpg"))).json()
    assert crowd["faces_count"] >= 5


def test_no_face(client):
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 160, 200)).save(blank, "JPEG")
    data = blank.getvalue()
    embed = client.post("/v1/embed", json=_b64(data)).json()
    assert embed["face_detected"] is False and embed["embedding"] is None and embed["face_issue"] == "no_face"
    assess = client.post("/v1/assess", json=_b64(data)).json()
    assert assess["passed"] is False and assess["reasons"] == ["no_face"] and assess["spoof"] is None
    _assert_error(client.post("/v1/spoof", json=_b64(data)), 422, "no_face")
    _assert_error(client.post("/v1/blur", json=_b64(data)), 422, "no_face")


def test_small_face_counts_as_none(service, photo_bytes):
    strict, svc = derived_service(service, face_area_threshold=0.5)
    with TestClient(create_app(strict, service=svc)) as c:
        body = c.post("/v1/analyze", json=_b64(photo_bytes("img1.jpg"))).json()
    assert body["face_detected"] is False and "face_too_small" in body["reasons"] and body["embedding"] is None


def test_multiple_faces_policy_reject(service, photo_bytes):
    strict, svc = derived_service(service, multiple_faces_policy="reject")
    with TestClient(create_app(strict, service=svc)) as c:
        body = c.post("/v1/assess", json=_b64(photo_bytes("couple.jpg"))).json()
    assert body["passed"] is False and "multiple_faces" in body["reasons"] and body["faces_count"] == 2


@pytest.mark.parametrize("path", IMAGE_ENDPOINTS)
@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"image_b64": "%%%not-base64%%%"}}, 400, "invalid_base64"),
        ({"json": {"image_b64": ""}}, 400, "empty_image"),
        ({"json": {"wrong": "field"}}, 422, "validation_error"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"json": {"image_b64": base64.b64encode(b"plain text, not a photo").decode()}}, 422, "invalid_image"),
        ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "empty_image"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"files": {"other": ("a.jpg", b"x", "image/jpeg")}}, 422, "validation_error"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_code(client, path, kwargs, status, code):
    _assert_error(client.post(path, **kwargs), status, code)


@pytest.mark.parametrize("path", IMAGE_ENDPOINTS)
def test_truncated_jpeg_is_refused(client, photo_bytes, path):
    data = photo_bytes("img3.jpg")
    _assert_error(client.post(path, json=_b64(data[: len(data) // 3])), 422, "image_truncated")


def test_oversized_upload_is_413(service):
    small, svc = derived_service(service, max_image_bytes=50_000)
    with TestClient(create_app(small, service=svc)) as c:
        big = bytes(60_000)
        _assert_error(
            c.post("/v1/embed", content=big, headers={"content-type": "image/jpeg"}), 413, "payload_too_large"
        )
        _assert_error(c.post("/v1/embed", files={"file": ("a.jpg", big, "image/jpeg")}), 413, "payload_too_large")
        _assert_error(c.post("/v1/embed", json=_b64(big)), 413, "payload_too_large")
        # Far over the body limit: refused from Content-Length before the body is read.
        _assert_error(
            c.post("/v1/embed", content=bytes(500_000), headers={"content-type": "image/jpeg"}),
            413,
            "payload_too_large",
        )


def test_exif_rotated_phone_photo_is_embedded_upright(client, photo_bytes):
    upright = Image.open(io.BytesIO(photo_bytes("img1.jpg")))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    rotated = client.post("/v1/embed", json=_b64(buf.getvalue())).json()
    original = client.post("/v1/embed", json=_b64(photo_bytes("img1.jpg"))).json()
    assert rotated["face_detected"] is True
    assert np.dot(rotated["embedding"], original["embedding"]) > 0.95
    assert abs(rotated["face"]["pose"]["roll"] - original["face"]["pose"]["roll"]) < 10


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_colour_modes_are_embedded(client, photo_bytes, mode):
    im = Image.open(io.BytesIO(photo_bytes("img2.jpg"))).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "JPEG" if mode in ("L", "CMYK") else "PNG")
    body = client.post("/v1/embed", files={"file": ("x", buf.getvalue(), "application/octet-stream")}).json()
    assert body["face_detected"] is True, body


def test_incoming_request_id_is_honoured(client, photo_bytes):
    r = client.post("/v1/nsfw", json=_b64(photo_bytes("img1.jpg")), headers={"X-Request-ID": "attendance-42"})
    assert r.headers["x-request-id"] == "attendance-42" and r.json()["requestId"] == "attendance-42"
    bad = client.post("/v1/nsfw", json={"image_b64": ""}, headers={"X-Request-ID": "bad id with spaces"})
    assert bad.json()["requestId"] != "bad id with spaces" and len(bad.json()["requestId"]) == 36


def test_readyz_lists_every_model(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["models"]) == {"detector", "embedder", "nsfw", "spoof", "blur"}
    for state in body["models"].values():
        assert state["state"] == "ready" and state["model_id"] and state["load_seconds"] is not None
    health = client.get("/healthz")
    assert health.json() == {"requestId": health.headers["x-request-id"], "status": "ok"}


def test_missing_model_gives_503_naming_it(spoof_model_path, tmp_path, photo_bytes):
    settings = ml_settings(tmp_path / "nowhere.onnx", tmp_path)
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["models"]["spoof"]["state"] == "missing"
        assert "nowhere.onnx" in ready["models"]["spoof"]["path"]
        body = _assert_error(c.post("/v1/spoof", json=_b64(photo_bytes("img1.jpg"))), 503, "spoof_model_unavailable")
        assert body["error"]["details"]["model"] == "spoof"
        _assert_error(c.post("/v1/assess", json=_b64(photo_bytes("img1.jpg"))), 503, "spoof_model_unavailable")
        # What does not need the missing model keeps working.
        assert c.post("/v1/embed", json=_b64(photo_bytes("img1.jpg"))).json()["face_detected"] is True


def test_broken_face_pack_makes_readyz_unavailable(spoof_model_path, tmp_path):
    pack = tmp_path / "models" / "mypack"
    pack.mkdir(parents=True)
    (pack / "junk.onnx").write_bytes(b"not a model")
    settings = ml_settings(spoof_model_path, tmp_path / "models", face_model="mypack")
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert r.json()["models"]["embedder"]["state"] != "ready"
        _assert_error(c.post("/v1/embed", json={"image_b64": "aGVsbG8="}), 503, "detector_model_unavailable")


def test_internal_token_is_required_when_set(service, photo_bytes):
    settings, svc = derived_service(service, auth_token="s3cret")
    with TestClient(create_app(settings, service=svc)) as c:
        body = _b64(photo_bytes("img1.jpg"))
        _assert_error(c.post("/v1/nsfw", json=body), 401, "unauthorized")
        _assert_error(c.post("/v1/nsfw", json=body, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert c.post("/v1/nsfw", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open


def test_past_capacity_answers_503_with_retry_after(spoof_model_path, tmp_path, photo_bytes):
    settings = ml_settings(spoof_model_path, tmp_path, workers=1, max_queue=0)
    svc = load_service(settings)
    release = threading.Event()
    # Occupy the only slot with a job that waits, as a slow request in progress would.
    occupant = threading.Thread(target=lambda: asyncio.run(svc.pool.run(release.wait)))
    occupant.start()
    try:
        deadline = time.monotonic() + 5
        while svc.pool.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with TestClient(create_app(settings, service=svc)) as c:
            r = c.post("/v1/embed", json=_b64(photo_bytes("img1.jpg")))
            _assert_error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1"
            assert svc.pool.rejected == 1
            release.set()
            occupant.join(timeout=5)
            # Capacity is back: the next request is served.
            assert c.post("/v1/embed", json=_b64(photo_bytes("img1.jpg"))).status_code == 200
    finally:
        release.set()
        occupant.join(timeout=5)
        svc.pool.shutdown()


def test_openapi_documents_all_three_encodings(client):
    spec = client.get("/openapi.json").json()
    for path in IMAGE_ENDPOINTS:
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert {"application/json", "multipart/form-data", "application/octet-stream"} <= set(content)
    assert "ImageB64Request" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_small_face_in_a_large_photo_is_found_by_the_full_size_pass(service, photo_bytes):
    face = Image.open(io.BytesIO(photo_bytes("img1.jpg"))).convert("RGB")
    face.thumbnail((120, 120))  # the face ends up about 40 px wide
    canvas = Image.new("RGB", (1600, 1200), (128, 128, 128))
    canvas.paste(face, (700, 500))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=95)
    settings, svc = derived_service(service, face_area_threshold=0.0)
    with TestClient(create_app(settings, service=svc)) as c:
        body = c.post("/v1/embed", json=_b64(buf.getvalue())).json()
    assert body["face_detected"] is True
    x1, y1, x2, y2 = body["face"]["box"]
    assert 700 <= x1 < x2 <= 820 and 500 <= y1 < y2 <= 620


class _BrokenDetector:
    """Fault injection: a model that crashes, to check what a client sees when the server has a bug."""

    def detect(self, *args, **kwargs):
        raise RuntimeError("simulated model crash")


def test_an_unexpected_error_is_a_500_with_the_request_id_and_no_details(service, photo_bytes):
    settings, svc = derived_service(service)
    models = type(service.pipeline.models)()
    models.slots = {name: dataclasses.replace(slot) for name, slot in service.pipeline.models.slots.items()}
    models.slots["detector"].model = _BrokenDetector()
    svc.pipeline.models = models
    with TestClient(create_app(settings, service=svc), raise_server_exceptions=False) as c:
        r = c.post("/v1/embed", json=_b64(photo_bytes("img1.jpg")), headers={"X-Request-ID": "crash-1"})
    body = _assert_error(r, 500, "internal_error")
    assert body["requestId"] == "crash-1" and "simulated" not in r.text
