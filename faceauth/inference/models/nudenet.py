"""NSFW check with NudeNet's 320n detector (YOLOv8, 18 body-part classes).

Rule: the NSFW probability of a photo is the highest confidence, anywhere in it, of the five classes of
*exposed* intimate parts. Covered parts, faces, feet, belly and armpits are not evidence: a face
photo in a swimsuit or with bare shoulders is an ordinary selfie. ``is_safe = probability < threshold``.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from faceauth.inference.runtime import run_in_batches

LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPLICIT_CLASSES = (
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
)
_EXPLICIT_IDX = np.array([LABELS.index(name) for name in EXPLICIT_CLASSES])
INPUT_SIZE = 320


def letterbox(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Pad to a square at the bottom/right (as NudeNet was trained), resize to `size`, scale to 0..1, NCHW."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    scale = size / side
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[:new_h, :new_w] = resized
    return (canvas / 255.0).transpose(2, 0, 1)


def explicit_probability(output: np.ndarray) -> np.ndarray:
    """(N, 4 + 18, anchors) raw YOLO output -> (N,) highest explicit-class confidence."""
    class_scores = output[:, 4:, :]
    return class_scores[:, _EXPLICIT_IDX, :].max(axis=(1, 2))


class NudeNetNsfw:
    license = "AGPL-3.0 (NudeNet 320n, the nudenet wheel): copyleft"

    def __init__(self, session: ort.InferenceSession, *, name: str = "320n.onnx") -> None:
        self.session = session
        out_shape = self.session.get_outputs()[0].shape
        if len(out_shape) != 3 or out_shape[1] != 4 + len(LABELS):
            raise ValueError(f"{name}: expected a NudeNet detector output [N, 22, anchors], got {out_shape}")

    def nsfw_probability(self, images_rgb: list[np.ndarray]) -> np.ndarray:
        return self.probabilities([letterbox(img) for img in images_rgb])

    def probabilities(self, letterboxed: list[np.ndarray]) -> np.ndarray:
        """(N,) explicit-content probabilities of `letterbox` outputs, in one model run."""
        output = run_in_batches(self.session, np.stack(letterboxed))[0]
        return explicit_probability(output).astype(np.float64)
