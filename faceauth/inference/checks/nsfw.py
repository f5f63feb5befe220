"""NSFW: explicit content anywhere in the photo (NudeNet, faceauth.inference.models.nudenet).
``is_safe = probability < ML_SERVICE_NSFW_THRESHOLD``."""

from __future__ import annotations

import numpy as np

from faceauth.contracts.analysis import NsfwResult
from faceauth.inference.checks.base import QualityCheck
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.nudenet import INPUT_SIZE, NudeNetNsfw, letterbox


class NsfwCheck(QualityCheck[np.ndarray]):
    name = "nsfw"
    pixels = "photo"
    photo_side = INPUT_SIZE
    model: NudeNetNsfw

    def model_input(self, image: DecodedImage, face: Detection | None = None) -> np.ndarray:
        return letterbox(image.rgb)

    def run(self, inputs: list[np.ndarray]) -> list[float]:
        return [float(p) for p in self.model.probabilities(inputs)]

    @staticmethod
    def result(flagged: bool, probability: float) -> NsfwResult:
        return NsfwResult(is_safe=not flagged, probability=probability)

    @staticmethod
    def reference_input(image: DecodedImage, face: Detection | None) -> np.ndarray:
        return image.rgb
