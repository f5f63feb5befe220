"""Passive anti-spoofing with MiniFASNetV2 (Silent-Face-Anti-Spoofing weights, 80x80 input).

The network looks at the face *and its surroundings* (a crop 2.7x the detector box): the frame of a
phone screen or the edge of a print is part of the evidence.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from faceauth.inference.runtime import run_in_batches, softmax

_INPUT_SIZE = 80
_CONTEXT_SCALE = 2.7
_LIVE_CLASS = 1


def context_crop(rgb: np.ndarray, box: np.ndarray, scale: float = _CONTEXT_SCALE) -> np.ndarray:
    """The detector box enlarged around its centre (kept inside the image) as an 80x80 BGR crop."""
    img_h, img_w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    box_w, box_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    s = min(scale, (img_h - 1) / box_h, (img_w - 1) / box_w)
    new_w, new_h = box_w * s, box_h * s
    cx, cy = x1 + box_w / 2, y1 + box_h / 2
    left, top = cx - new_w / 2, cy - new_h / 2
    # Shift (don't shrink) a window that overhangs the image back inside it.
    left = min(max(left, 0.0), img_w - 1 - new_w)
    top = min(max(top, 0.0), img_h - 1 - new_h)
    col0, row0 = int(left), int(top)
    col1, row1 = int(left + new_w), int(top + new_h)
    crop = rgb[row0 : row1 + 1, col0 : col1 + 1]
    crop = cv2.resize(crop, (_INPUT_SIZE, _INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return crop[:, :, ::-1]  # the weights were trained on BGR


class MiniFASNetSpoof:
    license = "Apache-2.0 (MiniFASNet, Silent-Face-Anti-Spoofing)"

    def __init__(self, session: ort.InferenceSession, *, name: str = "MiniFASNet model") -> None:
        self.session = session
        inp = self.session.get_inputs()[0]
        if list(inp.shape[1:]) != [3, _INPUT_SIZE, _INPUT_SIZE]:
            raise ValueError(f"{name}: expected a [N,3,80,80] MiniFASNet model, got {inp.shape}")

    def spoof_probability(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """Probability that each face is a presentation attack (1 - P(live))."""
        # Raw 0..255 values: this model was trained without input scaling.
        batch = np.stack(crops_bgr).astype(np.float32).transpose(0, 3, 1, 2)
        probs = softmax(run_in_batches(self.session, batch)[0])
        return 1.0 - probs[:, _LIVE_CLASS]
