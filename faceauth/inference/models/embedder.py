"""ArcFace embedder: an L2-normalised 512-d vector of an aligned 112x112 face (faceauth.inference.alignment), from
any InsightFace-style recognition ONNX (w600k_mbf, w600k_r50, glintr100, AuraFace)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from faceauth.inference.alignment import ALIGNED_SIZE, align_face, crop_to_aligned
from faceauth.inference.models.detector import Detection
from faceauth.inference.runtime import run_in_batches


class ArcFaceEmbedder:
    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        model_id: str,
        name: str = "recognition model",
        license: str = "InsightFace weights: non-commercial research use only",
        input_mean: float = 127.5,
        input_std: float = 127.5,
    ) -> None:
        self.session = session
        self.model_id = model_id
        # InsightFace's packs are research-only; AuraFace (Apache-2.0) says so through its pack (modelset).
        self.license = license
        inp = self.session.get_inputs()[0]
        if list(inp.shape[1:]) != [3, ALIGNED_SIZE, ALIGNED_SIZE]:
            raise ValueError(f"{name}: expected a [N,3,112,112] recognition model, got {inp.shape}")
        self.input_mean = input_mean
        self.input_std = input_std
        probe = self.embed_aligned([np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), np.uint8)])
        self.dim = int(probe.shape[1])

    def align(self, rgb: np.ndarray, face: Detection) -> np.ndarray:
        """The face warped onto the ArcFace template by its 5 landmarks (112x112)."""
        return align_face(rgb, face.landmarks)

    def from_crop(self, rgb: np.ndarray) -> np.ndarray:
        """An already-cropped face (aligned=true) as the network's input."""
        return crop_to_aligned(rgb)

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        """Aligned RGB 112x112 crops -> (N, dim) unit vectors."""
        batch = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)
        batch = (batch - self.input_mean) / self.input_std
        vectors = run_in_batches(self.session, batch)[0].astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
