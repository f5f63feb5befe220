"""Request and response bodies of the ML service: the contract's answers (faceauth.contracts.analysis) with the
request id every answer carries, and the service's own probes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from faceauth.contracts.analysis import (
    Analysis,
    Assessment,
    BatchAnalysis,
    BlurResult,
    DetectedFaces,
    Face,
    FaceIssue,
    NsfwResult,
    SpoofResult,
    Vector,
)
from faceauth.kit.requests import Answer


class ImageB64Request(BaseModel):
    image_b64: str = Field(description="The image file (JPEG, PNG, WebP, BMP, TIFF, GIF), base64-encoded.")


class NsfwResponse(Answer, NsfwResult):
    model_id: str


class SpoofResponse(Answer, SpoofResult):
    model_id: str


class BlurResponse(Answer, BlurResult):
    model_id: str


class EmbedResponse(Answer):
    face_detected: bool
    embedding: Vector | None = Field(description="L2-normalised vector of the largest face, or null.")
    embedding_dim: int
    model_id: str = Field(description="Identifies the vector space; never compare vectors of different ids.")
    face: Face | None
    faces_count: int
    face_issue: FaceIssue | None = None


class AssessResponse(Answer, Assessment):
    pass


class AnalyzeResponse(Answer, Analysis):
    pass


class BatchAnalyzeResponse(Answer, BatchAnalysis):
    pass


class DetectResponse(Answer, DetectedFaces):
    pass


class ModelState(BaseModel):
    state: Literal["ready", "failed", "missing", "off"]
    path: str | None
    model_id: str | None
    license: str | None = Field(default=None, description="What the weights' licence allows (docs/MODELS.md).")
    load_seconds: float | None
    error: str | None


class ReadyResponse(Answer):
    status: Literal["ok", "degraded", "unavailable"]
    profile: str = Field(default="default", description="ML_SERVICE_MODEL_PROFILE")
    embedding_dim: int = Field(default=0, description="The embedder's vector size (0: no embedder loaded)")
    models: dict[str, ModelState]
    pool: dict[str, int]


class HealthResponse(Answer):
    status: Literal["ok"]
