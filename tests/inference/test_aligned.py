"""`aligned=true`: embedding an already-cropped face (no detection), with real photos and the real models."""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceauth.config import DEFAULT_MATCH_THRESHOLD
from faceauth.inference.alignment import ARCFACE_TEMPLATE, align_face, crop_to_aligned
from faceauth.inference.app import create_app
from tests.inference.conftest import derived_service

RAW = {"content-type": "application/octet-stream"}


def _encode(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def crop_of(service, photo_bytes):
    """The service's own 112x112 ArcFace crop of a photo's subject face (as the embedder sees it)."""
    cache: dict[tuple[str, int], np.ndarray] = {}

    def crop(name: str, size: int = 112) -> np.ndarray:
        if (name, size) not in cache:
            analysis = service.pipeline.analyze(photo_bytes(name), frozenset({"embed"}))
            assert analysis.primary is not None, name
            cache[name, size] = align_face(analysis.image.rgb, analysis.primary.detection.landmarks, size)
        return cache[name, size]

    return crop


def _embed(client, data: bytes, aligned: bool = True) -> np.ndarray:
    r = client.post(f"/v1/embed?aligned={str(aligned).lower()}", content=data, headers=RAW)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embedding"])


@pytest.mark.parametrize("name", ["img1.jpg", "img2.jpg", "img20.jpg", "img33.jpg"])
def test_the_services_own_crop_embeds_like_the_full_photo(client, photo_bytes, crop_of, name):
    full = _embed(client, photo_bytes(name), aligned=False)
    assert float(_embed(client, _encode(crop_of(name))) @ full) > 0.9999  # lossless: the very same input
    assert float(_embed(client, _encode(crop_of(name), "JPEG")) @ full) > 0.99
    # A larger crop is area-averaged down to 112 px.
    assert float(_embed(client, _encode(crop_of(name, 224))) @ full) > 0.99


def test_aligned_crops_separate_same_and_different_people(client, photo_bytes, crop_of, labelled_pairs):
    names = sorted({p.left for p in labelled_pairs} | {p.right for p in labelled_pairs})
    full = {n: _embed(client, photo_bytes(n), aligned=False) for n in names}
    crops = {}
    # The crops go through the batch route, 9 at a time.
    for start in range(0, len(names), 9):
        chunk = names[start : start + 9]
        files = [("files", (n, _encode(crop_of(n), "JPEG"), "image/jpeg")) for n in chunk]
        r = client.post("/v1/analyze/batch?aligned=true", files=files)
        assert r.status_code == 200, r.text
        for n, item in zip(chunk, r.json()["results"], strict=True):
            crops[n] = np.asarray(item["analysis"]["embedding"])
    same = np.array([crops[p.left] @ crops[p.right] for p in labelled_pairs if p.same])
    diff = np.array([crops[p.left] @ crops[p.right] for p in labelled_pairs if not p.same])
    assert same.min() > DEFAULT_MATCH_THRESHOLD > diff.max(), (same.min(), diff.max())
    # Each pair's similarity is the one of the full photos.
    for p in labelled_pairs:
        assert crops[p.left] @ crops[p.right] == pytest.approx(full[p.left] @ full[p.right], abs=0.04)


def test_aligned_answer_shape(client, crop_of):
    crop = crop_of("img2.jpg")
    body = client.post("/v1/analyze?aligned=true", content=_encode(crop), headers=RAW).json()
    assert body["face_detected"] is True and body["faces_count"] == 1 and body["reasons"] == []
    assert body["spoof"] is None and body["skipped_checks"] == ["spoof"]
    assert body["nsfw"]["is_safe"] is True and body["blur"] is not None and body["passed"] is True
    face = body["face"]
    assert face["box"] == [0.0, 0.0, 112.0, 112.0] and face["area_fraction"] == 1.0 and face["pose"] is None
    np.testing.assert_allclose(face["landmarks"], ARCFACE_TEMPLATE, atol=0.06)
    assert "detect" not in body["timings_ms"] and "spoof" not in body["timings_ms"]
    # The same vector from /v1/embed and from the batch route.
    embed = client.post("/v1/embed?aligned=true", content=_encode(crop), headers=RAW).json()
    assert embed["face_detected"] is True and embed["face"]["pose"] is None and embed["face_issue"] is None
    batch = client.post("/v1/analyze/batch?aligned=true", files=[("files", ("c.png", _encode(crop), "image/png"))])
    vectors = [body["embedding"], embed["embedding"], batch.json()["results"][0]["analysis"]["embedding"]]
    assert float(np.dot(vectors[0], vectors[1])) > 0.9999 and float(np.dot(vectors[0], vectors[2])) > 0.9999
    # Without aligned the assessment is unchanged: spoof runs and nothing is skipped.
    plain = client.post("/v1/analyze", content=_encode(crop), headers=RAW).json()
    assert plain["skipped_checks"] == []


def test_a_non_square_crop_is_padded_not_stretched(client, crop_of):
    tall = np.full((100, 50, 3), 200, np.uint8)
    square = crop_to_aligned(tall)
    assert square.shape == (112, 112, 3)
    assert (square[:, :27] == 0).all() and (square[:, 85:] == 0).all() and (square[:, 29:83] == 200).all()
    # Cut 16 px off each side of a real crop: the face keeps its size and place once re-padded.
    crop = crop_of("img20.jpg")
    narrow = np.ascontiguousarray(crop[:, 16:96])
    body = client.post("/v1/analyze?aligned=true", content=_encode(narrow), headers=RAW).json()
    assert body["face"]["box"] == [0.0, 0.0, 80.0, 112.0]
    np.testing.assert_allclose(body["face"]["landmarks"], ARCFACE_TEMPLATE - [16, 0], atol=0.06)
    whole = _embed(client, _encode(crop))
    assert float(np.asarray(body["embedding"]) @ whole) > 0.8


def test_a_small_crop_is_enlarged(client, crop_of):
    crop = crop_of("img1.jpg")
    small = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
    body = client.post("/v1/analyze?aligned=true", content=_encode(small), headers=RAW).json()
    assert body["face"]["box"] == [0.0, 0.0, 64.0, 64.0]
    assert float(np.asarray(body["embedding"]) @ _embed(client, _encode(crop))) > 0.9


def test_aligned_does_not_need_the_detector_or_the_spoof_model(service, crop_of):
    settings, svc = derived_service(service)
    models = type(service.pipeline.models)()
    models.slots = {name: dataclasses.replace(slot) for name, slot in service.pipeline.models.slots.items()}
    for name in ("detector", "spoof"):
        models.slots[name].state, models.slots[name].model = "missing", None
    models.embedding_dim = service.pipeline.models.embedding_dim
    svc.pipeline.models = models
    data = _encode(crop_of("img2.jpg"))
    with TestClient(create_app(settings, service=svc)) as c:
        assert c.post("/v1/analyze?aligned=true", content=data, headers=RAW).status_code == 200
        r = c.post("/v1/analyze", content=data, headers=RAW)
        assert r.status_code == 503 and r.json()["error"]["code"] == "detector_model_unavailable"
