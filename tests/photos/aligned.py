"""A tight aligned crop of a photo's face, as a client would send with aligned=true."""

from __future__ import annotations

import cv2
import numpy as np
from fastapi.testclient import TestClient

from faceauth.inference.alignment import align_face


def aligned_crop(api: TestClient, photo: bytes) -> bytes:
    """The 112x112 aligned face of `photo` (landmarks from the API's own /v1/faces/detect), as PNG."""
    face = api.post("/v1/faces/detect", files={"file": ("p.jpg", photo)}).json()["faces"][0]
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    crop = align_face(rgb, np.asarray(face["landmarks"], dtype=np.float32))
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert ok
    return png.tobytes()
