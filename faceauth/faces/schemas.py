"""Response bodies of the face endpoints (the reference contract's shapes, plus extras)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The ML service's verdict (`imageQualityAssessment`) and its detected faces, passed through unchanged.
from faceauth.contracts.analysis import Assessment as ImageQualityAssessment
from faceauth.contracts.analysis import BlurResult, DetectedFaces, Face, SpoofResult
from faceauth.contracts.ids import FACE_ID_MAX, ID_PATTERN, TENANT_MAX, TOP_K_MAX
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


class DetectResponse(Answer, DetectedFaces):
    pass


class FaceQuality(BaseModel):
    passed: bool = Field(description="The photo's check (nsfw) and this face's (spoof, blur) passed.")
    reasons: list[str] = Field(description="Why not: nsfw, spoof, blur.")
    spoof: SpoofResult | None
    blur: BlurResult | None


class RecognizedFace(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded (EXIF-upright) photo.")
    face: Face = Field(description="The detection: box, landmarks, pose, area and quality score.")
    quality: FaceQuality
    matches: list[Match] = Field(description="This face's best matches, as /v1/faces/search answers them.")
    skipped_reason: str | None = Field(None, description="'quality_check_failed': this face was not searched.")


class RecognizeResult(BaseModel):
    faces: list[RecognizedFace] = Field(description="One entry per face, largest first, at most `limit`.")
    faces_count: int = Field(description="Faces the detector found in the photo (also the small ones).")
    threshold: float
    top_k: int
    group_by: Literal["face", "subject"]
    model_id: str | None


class RecognizeResponse(Answer):
    imageQualityAssessment: ImageQualityAssessment = Field(
        description="The photo's verdict, as for its largest face (/v1/faces/search)."
    )
    recognizeResult: RecognizeResult


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


FaceIdItem = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=FACE_ID_MAX)]


class _TenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(pattern=ID_PATTERN, max_length=TENANT_MAX)


class _SearchOptions(_TenantBody):
    top_k: int | None = Field(None, ge=1, le=TOP_K_MAX, description="1..100, default 5")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="minimum cosine score; default from settings")
    group_by: Literal["face", "subject"] = "face"


class SearchByFaceRequest(_SearchOptions):
    face_id: FaceIdItem = Field(description="A stored face of the tenant: its vector is the query.")


class SearchByEmbeddingRequest(_SearchOptions):
    embedding: list[float] = Field(description="A vector of the model's dimension (FACEAUTH_MILVUS_EMBEDDING_DIM).")
    model_id: str | None = Field(
        None,
        max_length=128,
        description="The model that made the vector (an answer's model_id); default: the ML service's current one.",
    )


class DeleteManyRequest(_TenantBody):
    ids: list[FaceIdItem] = Field(min_length=1, description="Face ids to delete, at most FACEAUTH_MAX_BATCH.")


class DeleteManyResponse(Answer):
    deleted: list[str] = Field(description="The ids that were deleted, in request order.")
    not_found: list[str] = Field(description="The ids the tenant has no face under (not an error).")


class SearchByResponse(Answer):
    searchResult: SearchResult
