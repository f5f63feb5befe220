"""Response bodies of the face endpoints (the reference contract's shapes, plus extras)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The ML service's verdict (`imageQualityAssessment`) and its detected faces, passed through unchanged.
from faceauth.contracts.analysis import Assessment as ImageQualityAssessment
from faceauth.contracts.analysis import DetectedFaces
from faceauth.kit.errors import AppError, ErrorDetail
from faceauth.kit.requests import Answer
from faceauth.storage.records import FaceRecord
from faceauth.storage.records import Match as FoundMatch


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UserOperationResult(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    operation: Literal["INSERT", "UPSERT", "DELETE"]
    status: Literal["success"] = "success"


class FaceRecordOut(BaseModel):
    face_id: str
    subject_id: str = Field(description="The person this face belongs to (the face id unless enrolled under one).")
    tenant: str
    object_key: str = Field(description="Where the image is in the object store: tenant/face_id/revision.")
    model_id: str = Field(description="The embedding model that produced the stored vector.")
    created_at: str = Field(description="When this revision of the face was stored (UTC, ISO 8601).")

    @classmethod
    def of(cls, record: FaceRecord) -> FaceRecordOut:
        return cls(
            face_id=record.face_id,
            subject_id=record.subject_id,
            tenant=record.tenant,
            object_key=record.object_key,
            model_id=record.model_id,
            created_at=iso_utc(record.created_at_ms),
        )


class EnrollResponse(Answer):
    imageQualityAssessment: ImageQualityAssessment
    userOperationResult: UserOperationResult
    face: FaceRecordOut


class Match(BaseModel):
    id: str = Field(description="The face id (with group_by=subject: the subject's best-matching face).")
    subject_id: str
    score: float = Field(description="Cosine similarity, -1..1; matches are >= the threshold, best first.")

    @classmethod
    def of(cls, match: FoundMatch) -> Match:
        return cls(id=match.face_id, subject_id=match.subject_id, score=round(match.score, 6))


class SearchResult(BaseModel):
    matches: list[Match]
    threshold: float
    top_k: int
    group_by: Literal["face", "subject"] = Field(description="One match per face, or per subject (its best face).")
    model_id: str | None = Field(description="The embedding model compared; only its vectors are searched.")
    skipped_reason: str | None = Field(
        None, description="Why the search did not run: 'quality_check_failed' (see imageQualityAssessment.reasons)."
    )


class SearchResponse(Answer):
    queryId: str | None = Field(None, description="The `id` form field, echoed.")
    imageQualityAssessment: ImageQualityAssessment
    searchResult: SearchResult
    receipt: str | None = Field(None, description="With receipt=true: the signed decision (docs/LIVENESS.md).")


class DetectResponse(Answer, DetectedFaces):
    pass


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    id: str
    status: int = Field(description="What this item alone would have answered: 200, 409, 413, 422, 503 ...")
    imageQualityAssessment: ImageQualityAssessment | None = None
    face: FaceRecordOut | None = None
    error: ErrorDetail | None = None

    @classmethod
    def failed(cls, index: int, face_id: str, error: AppError) -> BatchItemResult:
        detail = ErrorDetail(code=error.code, message=error.message, details=error.details)
        return cls(index=index, id=face_id, status=error.status, error=detail)


class BatchInsertResponse(Answer):
    succeeded: int
    failed: int
    results: list[BatchItemResult]


class ImageLinkResponse(Answer):
    face_id: str
    url: str = Field(description="GET it without an API key until it expires; share it only with who may see the face.")
    expires_at: str = Field(description="UTC, ISO 8601.")


class DeleteResponse(Answer):
    userOperationResult: UserOperationResult


class FaceResponse(Answer, FaceRecordOut):
    pass
