"""Blur: is the subject face sharp? The calibrated sharpness classifier (faceauth.inference.models.sharpness) on
the face at the photo's own pixel density. ``is_sharp = probability < ML_SERVICE_BLUR_THRESHOLD``."""

from __future__ import annotations

import numpy as np

from faceauth.contracts.analysis import BlurResult
from faceauth.inference.alignment import align_face
from faceauth.inference.checks.base import QualityCheck
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.sharpness import SharpnessClassifier


class BlurCheck(QualityCheck[np.ndarray]):
    name = "blur"
    # A slight blur of a large photo (sigma 3 px on 4600 px) is gone in a reduced copy.
    pixels = "native_face"
    model: SharpnessClassifier

    def __init__(self, model: SharpnessClassifier, threshold: float) -> None:
        super().__init__(model, threshold)
        self.model_id = model.model_id

    def model_input(self, image: DecodedImage, face: Detection) -> np.ndarray:
        """The classifier's features: computing them is the work, the model itself is a few dot products."""
        return self.model.features(image.rgb, face.landmarks, face.box, image.scale)

    def run(self, inputs: list[np.ndarray]) -> list[float]:
        return [self.model.probability_from_features(features) for features in inputs]

    @staticmethod
    def result(flagged: bool, probability: float) -> BlurResult:
        return BlurResult(is_sharp=not flagged, probability=probability)

    @staticmethod
    def reference_input(image: DecodedImage, face: Detection) -> np.ndarray:
        return align_face(image.rgb, face.landmarks, size=224)
