"""The anti-spoof check on real photos: a print is a spoof, a live selfie is not."""

from __future__ import annotations

import base64


def _b64(data: bytes) -> dict:
    return {"image_b64": base64.b64encode(data).decode()}


def test_assess_printed_photo_is_a_spoof(client, shared_dir):
    data = (shared_dir / "faces" / "antispoof" / "spoof_print_1.jpg").read_bytes()
    body = client.post("/v1/assess", json=_b64(data)).json()
    assert body["passed"] is False
    assert body["spoof"]["is_spoof"] is True and body["spoof"]["probability"] > 0.9
    assert "spoof" in body["reasons"]
    single = client.post("/v1/spoof", json=_b64(data)).json()
    assert single["is_spoof"] is True and single["probability"] == body["spoof"]["probability"]


def test_the_input_is_the_face_with_its_surroundings(service, shared_dir):
    check = service.pipeline.models.require("spoof")
    image = service.pipeline.decode((shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes())
    face = service.pipeline.models.require("detector").detect(image.rgb)[0]
    crop = check.model_input(image, face)
    assert crop.shape == (80, 80, 3)  # MiniFASNetV2's input: 2.7x the face box
    assert not check.flags(check.run([crop])[0])  # a live selfie
