"""The blur check end to end: a blurred selfie fails it, the sharp original passes."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps


@pytest.mark.parametrize("blur", ["gaussian", "motion"])
def test_blurred_selfie_fails_the_blur_check_end_to_end(client, shared_dir, blur):
    path = shared_dir / "faces" / "antispoof" / "live_1.jpg"
    # The phone photo is EXIF-rotated; the copy below carries no EXIF, so rotate its pixels upright first.
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    if blur == "gaussian":
        blurred = cv2.GaussianBlur(upright, (0, 0), 3.0)
    else:
        kernel = np.zeros((21, 21), np.float32)
        kernel[10, :] = 1 / 21
        blurred = cv2.filter2D(upright, -1, kernel)
    buf = io.BytesIO()
    Image.fromarray(blurred).save(buf, "JPEG", quality=92)
    sharp = client.post("/v1/blur", files={"file": ("live.jpg", path.read_bytes(), "image/jpeg")}).json()
    assert sharp["is_sharp"] is True
    body = client.post("/v1/assess", files={"file": ("blurred.jpg", buf.getvalue(), "image/jpeg")}).json()
    assert body["blur"]["is_sharp"] is False and body["passed"] is False and "blur" in body["reasons"]


def test_the_check_reads_the_full_resolution_face(service, photo_bytes):
    check = service.pipeline.models.require("blur")
    assert check.pixels == "native_face" and check.model_id == "faceauth-sharpness-v1"
    image = service.pipeline.decode(photo_bytes("img1.jpg"))
    face = service.pipeline.models.require("detector").detect(image.rgb)[0]
    (probability,) = check.run([check.model_input(image, face)])
    assert probability == check.model.blur_probability(image.rgb, face.landmarks, face.box, image.scale)
