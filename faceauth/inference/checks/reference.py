"""A reference-system classifier serving one of the checks (`ML_SERVICE_<CHECK>_LOCAL_MODEL_PATH` set to a
torchvision `.pth`, or to its ONNX conversion).

The classifier stands in for the check's own model only: the check's name, threshold and verdict stay, and what it
is shown is the check's `reference_input` (NSFW the whole photo, anti-spoof the 2.7x context crop, blur the face
aligned to 224 px). Class `positive_index` (default 1) is the bad class: nsfw / spoof / blurry.
"""

from __future__ import annotations

import numpy as np

from faceauth.inference.checks.base import CheckResult, QualityCheck
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.torchvision import Classifier, preprocess_imagenet


class ReferenceClassifierCheck(QualityCheck[np.ndarray]):
    model: Classifier

    def __init__(
        self, serves: type[QualityCheck], classifier: Classifier, *, threshold: float, positive_index: int = 1
    ) -> None:
        classes = classifier.num_classes
        if classes and positive_index >= classes:
            raise ValueError(f"{classifier.name} has {classes} classes; positive class {positive_index} does not exist")
        super().__init__(classifier, threshold)
        self.serves = serves
        self.positive_index = positive_index
        # The check it serves decides where the pipeline makes its input.
        self.name, self.pixels = serves.name, serves.pixels
        self.photo_side, self.needs_surroundings = serves.photo_side, serves.needs_surroundings

    def model_input(self, image: DecodedImage, face: Detection | None) -> np.ndarray:
        return self.serves.reference_input(image, face)

    def run(self, inputs: list[np.ndarray]) -> list[float]:
        probs = self.model.predict_proba(preprocess_imagenet(inputs, self.model.input_size))
        return [float(p) for p in probs[:, self.positive_index]]

    def result(self, flagged: bool, probability: float) -> CheckResult:
        return self.serves.result(flagged, probability)

    def reference_input(self, image: DecodedImage, face: Detection | None) -> np.ndarray:
        return self.serves.reference_input(image, face)
