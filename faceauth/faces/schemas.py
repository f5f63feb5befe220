"""Request fields and response bodies of the face endpoints (the reference contract's shapes, plus extras)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# The ML service's verdict (`imageQualityAssessment`) and its detected faces, passed through unchanged.
from faceauth.inference.schemas import Assessment as ImageQualityAssessment
from faceauth.inference.schemas import Face as DetectedFace
from faceauth.kit.errors import ErrorDetail, ErrorResponse  # noqa: F401  (re-exported)

# Ids are path segments of object keys ("tenant/face_id/revision") and literals in Milvus filters, so they
# keep to a small, documented character set: no "/", quotes, spaces or control characters.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
FACE_ID_MAX = 128
TENANT_MAX = 256
TOP_K_MAX = 100


class UserOperationResult(BaseModel):
    operation: Literal["INSERT", "UPSERT", "DELETE"]
    status: Literal["success"]


class FaceRecordOut(BaseModel):
    face_id: str
    subject_id: str = Field(description="The person this face belongs to (the face id unless enrolled under one).")
    tenant: str
    object_key: str = Field(description="Where the image is in the object store: tenant/face_id/revision.")
    model_id: str = Field(description="The embedding model that produced the stored vector.")
    created_at: str = Field(description="When this revision of the face was stored (UTC, ISO 8601).")


class EnrollResponse(BaseModel):
    requestId: str
    imageQualityAssessment: ImageQualityAssessment
    userOperationResult: UserOperationResult
    face: FaceRecordOut


class Match(BaseModel):
    id: str = Field(description="The face id (with group_by=subject: the subject's best-matching face).")
    subject_id: str
    score: float = Field(description="Cosine similarity, -1..1; matches are >= the threshold, best first.")


class SearchResult(BaseModel):
    matches: list[Match]
    threshold: float
    top_k: int
    group_by: Literal["face", "subject"] = Field(description="One match per face, or per subject (its best face).")
    model_id: str | None = Field(description="The embedding model compared; only its vectors are searched.")
    skipped_reason: str | None = Field(
        None, description="Why the search did not run: 'quality_check_failed' (see imageQualityAssessment.reasons)."
    )


class SearchResponse(BaseModel):
    requestId: str
    queryId: str | None = Field(None, description="The `id` form field, echoed.")
    imageQualityAssessment: ImageQualityAssessment
    searchResult: SearchResult


class DetectResponse(BaseModel):
    requestId: str
    width: int
    height: int
    faces_count: int
    faces: list[DetectedFace] = Field(description="Every face, largest first.")


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    id: str
    status: int = Field(description="What this item alone would have answered: 200, 409, 413, 422, 503 ...")
    imageQualityAssessment: ImageQualityAssessment | None = None
    face: FaceRecordOut | None = None
    error: ErrorDetail | None = None


class BatchInsertResponse(BaseModel):
    requestId: str
    succeeded: int
    failed: int
    results: list[BatchItemResult]


class ImageLinkResponse(BaseModel):
    requestId: str
    face_id: str
    url: str = Field(description="GET it without an API key until it expires; share it only with who may see the face.")
    expires_at: str = Field(description="UTC, ISO 8601.")


class DeleteResponse(BaseModel):
    requestId: str
    userOperationResult: UserOperationResult


class FaceResponse(FaceRecordOut):
    requestId: str


class HealthResponse(BaseModel):
    requestId: str
    status: Literal["ok"]


class DependencyState(BaseModel):
    status: Literal["ok", "down"]
    detail: str | None = None
    latency_ms: float | None = None


class ReadyResponse(BaseModel):
    requestId: str
    status: Literal["ok", "unavailable"]
    checks: dict[str, DependencyState] = Field(description="milvus, object_store, ml_service.")
    model_id: str | None = Field(None, description="The embedding model the ML service has loaded.")
    warnings: list[str] = Field(default_factory=list)
