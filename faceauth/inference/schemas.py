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
)


class ImageB64Request(BaseModel):
    image_b64: str = Field(description="The image file (JPEG, PNG, WebP, BMP, TIFF, GIF), base64-encoded.")


class _Base(BaseModel):
    requestId: str


class NsfwResponse(_Base, NsfwResult):
    model_id: str


class SpoofResponse(_Base, SpoofResult):
    model_id: str


class BlurResponse(_Base, BlurResult):
    model_id: str


class EmbedResponse(_Base):
    face_detected: bool
    embedding: list[float] | None = Field(description="L2-normalised vector of the largest face, or null.")
    embedding_dim: int
    model_id: str = Field(description="Identifies the vector space; never compare vectors of different ids.")
    face: Face | None
    faces_count: int
    face_issue: FaceIssue | None = None


class AssessResponse(_Base, Assessment):
    pass


class AnalyzeResponse(_Base, Analysis):
    pass


class BatchAnalyzeResponse(_Base, BatchAnalysis):
    pass


class DetectResponse(_Base, DetectedFaces):
    pass


class ModelState(BaseModel):
    state: Literal["ready", "failed", "missing"]
    path: str | None
    model_id: str | None
    load_seconds: float | None
    error: str | None


class ReadyResponse(BaseModel):
    requestId: str
    status: Literal["ok", "degraded", "unavailable"]
    models: dict[str, ModelState]
    pool: dict[str, int]


class HealthResponse(BaseModel):
    requestId: str
    status: Literal["ok"]
