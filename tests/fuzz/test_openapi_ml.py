"""Schemathesis against the ML service's OpenAPI, in-process with the real models loaded.

`test_ml_openapi` fuzzes every operation from the document; `test_ml_odd_photos` sends real photos, re-encoded and
damaged in odd ways, through every image operation and encoding, so the decoders and models run on them too.
Every answer is checked against the document either way.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import schemathesis
from hypothesis import given, seed
from hypothesis import strategies as st

from faceauth.config import MLSettings
from faceauth.inference.app import create_app
from tests.fuzz import SEED, Target, config, hypothesis_settings, odd_photos

# The app's own document, built without starting the app (no model is loaded at collection).
schema = schemathesis.openapi.from_dict(
    create_app(MLSettings(_env_file=None, auto_fetch=False)).openapi(), config=config()
)

IMAGE_PATHS = ["/v1/embed", "/v1/nsfw", "/v1/spoof", "/v1/blur", "/v1/assess", "/v1/analyze", "/v1/detect"]
ALIGNED_PATHS = {"/v1/embed", "/v1/analyze", "/v1/analyze/batch"}


@schema.parametrize()
@hypothesis_settings(max_examples=100)
def test_ml_openapi(case: schemathesis.Case, ml_target: Target) -> None:
    ml_target.call_and_validate(case)


@pytest.fixture(scope="module")
def ml_photos(faces_dir: Path) -> list[bytes]:
    """One face, several faces, and a face too small to count."""
    return [(faces_dir / name).read_bytes() for name in ("img1.jpg", "couple.jpg", "selfie-many-people.jpg")]


def _image_case(path: str, image: bytes, encoding: str, aligned: bool) -> schemathesis.Case:
    operation = schema[path]["POST"]
    query = {"aligned": aligned} if path in ALIGNED_PATHS else None
    if encoding == "json":
        return operation.Case(
            media_type="application/json", body={"image_b64": base64.b64encode(image).decode()}, query=query
        )
    if encoding == "multipart":
        return operation.Case(media_type="multipart/form-data", body={"file": image}, query=query)
    return operation.Case(media_type=encoding, body=image, query=query)


# Pillow warns about the damaged files it still reads.
@pytest.mark.filterwarnings("ignore::UserWarning")
@hypothesis_settings(max_examples=40)
@given(data=st.data())
@seed(SEED)
def test_ml_odd_photos(ml_target: Target, ml_photos: list[bytes], data: st.DataObject) -> None:
    image = data.draw(odd_photos(ml_photos), label="image")
    path = data.draw(st.sampled_from(IMAGE_PATHS), label="path")
    encoding = data.draw(
        st.sampled_from(["json", "multipart", "application/octet-stream", "image/*"]), label="encoding"
    )
    aligned = data.draw(st.booleans(), label="aligned")
    ml_target.call_and_validate(_image_case(path, image.data, encoding, aligned))


# Pillow warns about the damaged files it still reads.
@pytest.mark.filterwarnings("ignore::UserWarning")
@hypothesis_settings(max_examples=10)
@given(data=st.data())
@seed(SEED)
def test_ml_odd_photo_batches(ml_target: Target, ml_photos: list[bytes], data: st.DataObject) -> None:
    images = data.draw(st.lists(odd_photos(ml_photos), min_size=1, max_size=4), label="images")
    operation = schema["/v1/analyze/batch"]["POST"]
    case = operation.Case(
        media_type="multipart/form-data",
        body={"files": [image.data for image in images]},
        query={"aligned": data.draw(st.booleans())},
    )
    ml_target.call_and_validate(case)
