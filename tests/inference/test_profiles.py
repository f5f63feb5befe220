"""Model profiles: the permissive profile loads dlib's models with their licences and 128-d vectors, and the NSFW
check can be turned off for a deployment (answers say so in skipped_checks; /v1/nsfw says it is off)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceauth.inference.app import create_app, load_service
from faceauth.inference.service import InferenceService
from tests.inference.conftest import ml_settings


@pytest.fixture(scope="module")
def permissive(spoof_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> InferenceService:
    return load_service(ml_settings(spoof_model_path, tmp_path_factory.mktemp("models"), model_profile="permissive"))


def _b64(path: Path) -> dict[str, str]:
    return {"image_b64": base64.b64encode(path.read_bytes()).decode()}


def test_permissive_profile_loads_commercially_usable_models_and_no_nsfw(permissive):
    slots = permissive.pipeline.models.slots
    assert {name: slot.state for name, slot in slots.items()} == {
        "detector": "ready",
        "embedder": "ready",
        "nsfw": "off",
        "spoof": "ready",
        "blur": "ready",
    }
    assert "CC0" in slots["embedder"].license and "Boost" in slots["detector"].license
    assert "Apache-2.0" in slots["spoof"].license
    assert permissive.pipeline.models.embedding_dim == 128


def test_permissive_analyze_embeds_in_128_d_and_skips_nsfw(permissive, spoof_model_path, shared_dir):
    with TestClient(create_app(permissive.settings, service=permissive)) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok" and ready["profile"] == "permissive" and ready["embedding_dim"] == 128
        body = client.post("/v1/analyze", json=_b64(shared_dir / "faces" / "antispoof" / "live_1.jpg")).json()
        assert body["passed"] is True, body
        assert body["skipped_checks"] == ["nsfw"] and body["nsfw"] is None
        assert len(body["embedding"]) == 128 and body["embedding_dim"] == 128
        assert abs(np.linalg.norm(body["embedding"]) - 1.0) < 1e-4
        assert body["model_id"].startswith("dlib/")
        spoof = client.post("/v1/analyze", json=_b64(shared_dir / "faces" / "antispoof" / "spoof_print_1.jpg")).json()
        assert spoof["passed"] is False and "spoof" in spoof["reasons"]
        off = client.post("/v1/nsfw", json=_b64(shared_dir / "faces" / "antispoof" / "live_1.jpg"))
        assert off.status_code == 503 and off.json()["error"]["code"] == "nsfw_model_unavailable"
        assert "off" in off.json()["error"]["message"]


def test_permissive_detector_finds_a_face_that_fills_the_frame(permissive, faces_dir):
    """A kiosk selfie: the face crop alone, no background around it (HOG needs the border the detector adds)."""
    import cv2

    rgb = cv2.imread(str(faces_dir / "img1.jpg"))[:, :, ::-1]
    detector = permissive.pipeline.models.require("detector")
    x1, y1, x2, y2 = (int(v) for v in detector.detect(np.ascontiguousarray(rgb))[0].box)
    crop = np.ascontiguousarray(rgb[y1:y2, x1:x2])
    faces = detector.detect(crop)
    assert len(faces) == 1
    left_eye, right_eye = faces[0].landmarks[:2]
    assert left_eye[0] < right_eye[0]  # ArcFace order: the image-left eye first
    assert faces[0].points is not None and faces[0].points.shape == (5, 2)


def test_nsfw_turned_off_for_a_default_deployment(spoof_model_path, tmp_path, shared_dir):
    service = load_service(ml_settings(spoof_model_path, tmp_path, nsfw_enabled=False))
    assert service.pipeline.models.slots["nsfw"].state == "off"
    assert service.pipeline.models.embedding_dim == 512
    with TestClient(create_app(service.settings, service=service)) as client:
        assert client.get("/readyz").json()["status"] == "ok"
        body = client.post("/v1/analyze", json=_b64(shared_dir / "faces" / "antispoof" / "live_1.jpg")).json()
        assert body["passed"] is True and body["skipped_checks"] == ["nsfw"] and body["nsfw"] is None


def test_a_request_can_turn_a_check_off_for_a_tenant_policy(service, shared_dir):
    """The hook a per-tenant policy uses: `Pipeline.resolve(..., off=...)`."""
    pipeline = service.pipeline
    data = (shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes()
    plan = pipeline.resolve(frozenset({"embed", "nsfw", "spoof"}), off=frozenset({"nsfw"}))
    findings = pipeline.run(data, plan)
    assert findings.skipped_checks == ["nsfw"] and "nsfw" not in findings.probabilities
    assert "spoof" in findings.probabilities and findings.embedding is not None
