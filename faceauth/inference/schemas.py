"""Request and response bodies of the ML service (shapes follow the reference contract, plus extras)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ImageB64Request(BaseModel):
    image_b64: str = Field(description="The image file (JPEG, PNG, WebP, BMP, TIFF, GIF), base64-encoded.")


class Pose(BaseModel):
    yaw: float
    pitch: float
    roll: float


class Face(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded (EXIF-upright) photo.")
    score: float = Field(description="Detector confidence, 0..1.")
    landmarks: list[list[float]] = Field(
        description="5 points [x, y]: eye, eye, nose tip, mouth corner, mouth corner (image left to right)."
    )
    pose: Pose | None = Field(
        description="Coarse yaw/pitch/roll in degrees from the landmarks (about ±10°); null with aligned=true "
        "(the landmarks are then the ArcFace template's, not measured)."
    )
    area_fraction: float = Field(description="Box area / photo area.")
    quality: float = Field(description="0..1: detector score x size x frontalness x sharpness (see docs/API.md).")
    sharpness: float | None = Field(None, description="1 - P(blurry), when the blur check ran for this face.")


class NsfwResult(BaseModel):
    is_safe: bool
    probability: float = Field(description="P(explicit content), 0..1.")


class SpoofResult(BaseModel):
    is_spoof: bool
    probability: float = Field(description="P(presentation attack: print, screen replay), 0..1.")


class BlurResult(BaseModel):
    is_sharp: bool
    probability: float = Field(description="P(blurry), 0..1.")


FaceIssue = Literal["no_face", "face_too_small", "multiple_faces"]


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


class Assessment(BaseModel):
    passed: bool = Field(description="nsfw.is_safe and not spoof.is_spoof and blur.is_sharp (and a usable face).")
    nsfw: NsfwResult
    spoof: SpoofResult | None = Field(description="null when there is no usable face.")
    blur: BlurResult | None = Field(description="null when there is no usable face.")
    face_detected: bool
    faces_count: int
    reasons: list[str] = Field(description="Why it did not pass: nsfw, spoof, blur, no_face, face_too_small, ...")
    skipped_checks: list[Literal["spoof"]] = Field(
        default_factory=list,
        description="Checks that did not run and do not count in `passed`: with aligned=true, spoof (anti-spoofing "
        "needs the surroundings of the face, which a tight crop does not have).",
    )


class AssessResponse(_Base, Assessment):
    pass


class Analysis(Assessment):
    embedding: list[float] | None
    embedding_dim: int
    model_id: str
    face: Face | None
    models: dict[str, str | None] = Field(description="Id of each model that ran.")
    timings_ms: dict[str, float] = Field(
        description="Per step. In a batch, nsfw/spoof/embed include the one run shared by the whole batch."
    )


class AnalyzeResponse(_Base, Analysis):
    pass


class ItemError(BaseModel):
    code: str = Field(description="As /v1/analyze would answer for this image alone: invalid_image, ...")
    message: str
    status: int = Field(description="The HTTP status /v1/analyze would answer for this image alone.")


class BatchItemOk(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    ok: Literal[True]
    analysis: Analysis = Field(description="The body /v1/analyze gives for this image (without requestId).")


class BatchItemFailed(BaseModel):
    index: int
    ok: Literal[False]
    error: ItemError


class BatchAnalyzeResponse(_Base):
    results: list[BatchItemOk | BatchItemFailed] = Field(description="One entry per file, in request order.")


class DetectResponse(_Base):
    width: int
    height: int
    faces_count: int
    faces: list[Face] = Field(description="Every face, largest first.")


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
