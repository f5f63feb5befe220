"""The two face models' contracts, which the pipeline holds them by: any detector (SCRFD, dlib's HOG) and any
embedder (ArcFace, dlib's ResNet) that keeps them can fill the slot, so a model profile is a choice of classes."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceauth.inference.models.detector import Detection, DetectorInput


class FaceDetector(Protocol):
    model_id: str | None
    license: str

    def model_input(
        self, rgb: np.ndarray, input_size: tuple[int, int] | None = None, *, full_size: bool = False
    ) -> DetectorInput: ...

    def detect_batch(self, inputs: list[DetectorInput]) -> list[list[Detection]]: ...

    def detect(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> list[Detection]: ...

    def input_scale(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> float: ...


class FaceEmbedder(Protocol):
    model_id: str
    license: str
    dim: int

    def align(self, rgb: np.ndarray, face: Detection) -> np.ndarray:
        """The network's input for a detected face."""
        ...

    def from_crop(self, rgb: np.ndarray) -> np.ndarray:
        """The network's input for an already-cropped face (aligned=true)."""
        ...

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, dim) unit vectors."""
        ...
