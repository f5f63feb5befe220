"""Anti-spoofing: is the subject face a presentation attack (a print, a screen)? MiniFASNetV2
(faceauth.inference.models.minifasnet) on the face and its surroundings. ``is_spoof = probability >=
ML_SERVICE_SPOOF_THRESHOLD``."""

from __future__ import annotations

import numpy as np

from faceauth.contracts.analysis import SpoofResult
from faceauth.inference.checks.base import QualityCheck
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.minifasnet import MiniFASNetSpoof, context_crop


class SpoofCheck(QualityCheck[np.ndarray]):
    name = "spoof"
    pixels = "face"
    # The crop is 2.7x the face: the frame of a phone screen or the edge of a print is part of the evidence.
    needs_surroundings = True
    model: MiniFASNetSpoof

    def model_input(self, image: DecodedImage, face: Detection) -> np.ndarray:
        return context_crop(image.rgb, face.box)

    def run(self, inputs: list[np.ndarray]) -> list[float]:
        return [float(p) for p in self.model.spoof_probability(inputs)]

    @staticmethod
    def result(flagged: bool, probability: float) -> SpoofResult:
        return SpoofResult(is_spoof=flagged, probability=probability)

    @staticmethod
    def reference_input(image: DecodedImage, face: Detection) -> np.ndarray:
        return context_crop(image.rgb, face.box)[:, :, ::-1].copy()  # the same crop, in RGB
