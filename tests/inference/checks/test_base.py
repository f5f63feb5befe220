"""What every check shares: at its threshold the photo fails it, and the assessment reports the failures in a
fixed order (the photo's checks, what is wrong with the face, the face's checks)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from faceauth.contracts.analysis import BlurResult, NsfwResult, SpoofResult
from faceauth.inference.app import create_app
from tests.inference.conftest import ml_settings


@pytest.mark.parametrize(
    ("name", "result", "field", "when_passed"),
    [
        ("nsfw", NsfwResult, "is_safe", True),
        ("spoof", SpoofResult, "is_spoof", False),
        ("blur", BlurResult, "is_sharp", True),
    ],
)
def test_at_the_threshold_the_photo_fails_the_check(service, name, result, field, when_passed):
    check = service.pipeline.models.require(name)
    below, at = check.verdict(check.threshold - 0.001), check.verdict(check.threshold)
    assert isinstance(below, result) and isinstance(at, result)
    assert getattr(below, field) is when_passed and getattr(at, field) is not when_passed
    assert at.probability == round(check.threshold, 4)
    assert check.name == name and not check.flags(check.threshold - 0.001) and check.flags(check.threshold)


def test_reasons_come_in_a_fixed_order(spoof_model_path, tmp_path, photo_bytes):
    # Thresholds of 0 fail every check that runs; two faces under the reject policy are a face issue.
    everything_fails = {f"{name}_threshold": 0.0 for name in ("nsfw", "spoof", "blur")}
    settings = ml_settings(spoof_model_path, tmp_path, multiple_faces_policy="reject", **everything_fails)
    with TestClient(create_app(settings)) as c:
        body = c.post("/v1/assess", content=photo_bytes("couple.jpg"), headers={"content-type": "image/jpeg"}).json()
    assert body["reasons"] == ["nsfw", "multiple_faces", "spoof", "blur"] and body["passed"] is False
