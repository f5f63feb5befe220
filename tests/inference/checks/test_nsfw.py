"""The NSFW check on real photos: its input, its batched run, and its answers through the service."""

from __future__ import annotations

import base64

import numpy as np


def _b64(data: bytes) -> dict:
    return {"image_b64": base64.b64encode(data).decode()}


def test_nsfw_on_ordinary_face_photos_is_safe(client, photo_bytes):
    for name in ("img1.jpg", "img20.jpg", "img45.jpg"):
        body = client.post("/v1/nsfw", json=_b64(photo_bytes(name))).json()
        assert body["is_safe"] is True and 0.0 <= body["probability"] < 0.5


def test_one_run_over_several_photos_scores_each_as_alone(service, photo_bytes):
    check = service.pipeline.models.require("nsfw")
    images = [service.pipeline.decode(photo_bytes(name)) for name in ("img1.jpg", "couple.jpg", "img20.jpg")]
    inputs = [check.model_input(image, None) for image in images]
    assert all(x.shape == (3, 320, 320) for x in inputs)  # the whole photo, letterboxed to NudeNet's input
    alone = [check.run([x])[0] for x in inputs]
    np.testing.assert_allclose(check.run(inputs), alone, atol=1e-6)
