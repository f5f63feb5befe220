"""Anti-spoofing by two Silent-Face models fused, as the reference pipeline does: MiniFASNetV2 on the face 2.7x
enlarged and MiniFASNetV1SE on it 4.0x enlarged, both cut from the same decoded image; P(spoof) is the mean of the
two models' P(spoof) (the mean of their softmax outputs).
``is_spoof = probability >= ML_SERVICE_SPOOF_FUSED_THRESHOLD``.
"""

from __future__ import annotations

import numpy as np

from faceauth.inference.checks.spoof import SpoofCheck
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.minifasnet import MiniFASNetSpoof, context_crop

V2_SCALE = 2.7
V1SE_SCALE = 4.0


class FusedSpoofCheck(SpoofCheck):
    """Takes the place of `SpoofCheck` in the spoof slot; same answers, two models."""

    def __init__(self, v2: MiniFASNetSpoof, v1se: MiniFASNetSpoof, threshold: float, *, model_id: str) -> None:
        super().__init__(v2, threshold)
        self.second = v1se
        self.model_id = model_id

    def model_input(self, image: DecodedImage, face: Detection) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return context_crop(image.rgb, face.box, V2_SCALE), context_crop(image.rgb, face.box, V1SE_SCALE)

    def run(self, inputs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:  # type: ignore[override]
        p_v2 = self.model.spoof_probability([near for near, _ in inputs])
        p_v1se = self.second.spoof_probability([wide for _, wide in inputs])
        return [float(p) for p in (p_v2 + p_v1se) / 2]
