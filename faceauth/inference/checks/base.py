"""What a quality check is: the input it makes, one run of its model over many images' inputs, and its verdict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from faceauth.contracts.analysis import BlurResult, NsfwResult, SpoofResult
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.detector import Detection

CheckName = Literal["nsfw", "spoof", "blur"]
CheckResult = NsfwResult | SpoofResult | BlurResult
# Where a check looks, which decides when the pipeline makes its input:
# "photo": the whole photo, reduced (made as soon as it is decoded, while the detector runs; batched);
# "face": the subject face in the working copy (made once the face is known; batched);
# "native_face": each judged face in the full-resolution decode (judged in the photo's own pixels, per face).
Pixels = Literal["photo", "face", "native_face"]

Input = TypeVar("Input")


class QualityCheck(ABC, Generic[Input]):
    """One check of a photo. Its probability is of the bad outcome (explicit, a spoof, blurry): at or above the
    threshold the photo fails it, and its name is the reason code the assessment reports."""

    # Set by each check class (and copied by the reference adapter from the check it serves):
    # its model slot, its step in the pipeline, its field in the answers and its reason code;
    name: CheckName
    pixels: Pixels
    # a "photo" check: the long side it reduces the photo to, so a copy already reduced that far serves as well;
    photo_side: int = 0
    # a face check that reads around the face, which a tight crop (aligned=true) does not have.
    needs_surroundings: bool = False
    model_id: str | None = None  # when the model has its own id (else the slot names it by its file)

    def __init__(self, model: Any, threshold: float) -> None:
        self.model = model
        self.threshold = threshold

    @abstractmethod
    def model_input(self, image: DecodedImage, face: Detection | None) -> Input:
        """What the model reads, made from the decoded image (and the face, unless it looks at the photo)."""

    @abstractmethod
    def run(self, inputs: list[Input]) -> list[float]:
        """The probability of the bad outcome for each input, in one model run."""

    @staticmethod
    @abstractmethod
    def result(flagged: bool, probability: float) -> CheckResult:
        """The check's answer for a probability (already rounded) that is, or is not, at the threshold."""

    @staticmethod
    @abstractmethod
    def reference_input(image: DecodedImage, face: Detection | None) -> np.ndarray:
        """What a reference-system classifier shown in place of this check's model reads (RGB uint8)."""

    def flags(self, probability: float) -> bool:
        return probability >= self.threshold

    def verdict(self, probability: float) -> CheckResult:
        return self.result(self.flags(probability), round(probability, 4))
