"""Bodies of the verification endpoints: /v1/faces/verify and the /compare-faces compatibility route."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from faceauth.faces.schemas import ImageQualityAssessment
from faceauth.kit.requests import Answer

_URL_DOC = "http(s):// URL of the photo, or s3://<bucket>/_uploads/<key> of the configured store"


class ProbeOut(BaseModel):
    index: int
    field: str = Field(description="The request field the probe came from, e.g. probes[0] or front_image2.")
    score: float | None = Field(description="Cosine similarity to the reference; null when no face was found.")
    matched: bool
    reason: str | None = Field(
        description="Why it did not count: no_face_detected, quality_check_failed, below_threshold; null if matched."
    )
    imageQualityAssessment: ImageQualityAssessment


class ReferenceOut(BaseModel):
    type: Literal["face", "subject", "image"] = Field(
        description="An enrolled face, an enrolled subject (its best-scoring face per probe), or a photo."
    )
    id: str | None = Field(description="The enrolled face id (type face) or subject id (type subject).")
    imageQualityAssessment: ImageQualityAssessment | None = Field(
        description="The reference photo's checks (type image): reported, not required, only a face is."
    )


class VerifyResponse(Answer):
    matched: bool = Field(description="At least min_matches probes matched.")
    threshold: float
    min_matches: int = Field(description="Matching probes required.")
    matches: int = Field(description="Probes that matched.")
    model_id: str
    reference: ReferenceOut
    probes: list[ProbeOut]


class CompareFacesRequest(BaseModel):
    """The face-verification service's request: 3 front photos are compared with 1 back (reference) photo."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256, description="Echoed in the answer.")
    front_image1: str = Field(min_length=1, max_length=4096, description=_URL_DOC)
    front_image2: str = Field(min_length=1, max_length=4096, description=_URL_DOC)
    front_image3: str = Field(min_length=1, max_length=4096, description=_URL_DOC)
    back_image: str = Field(min_length=1, max_length=4096, description=f"the reference photo: {_URL_DOC}")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="0..1 only (a negative threshold would match anybody); default from settings"
    )
    min_matches: Literal[2, 3] | None = Field(
        None, description="front photos that must match: 2 (default, FACEAUTH_COMPARE_MIN_MATCHES) or 3 (strict)"
    )
    require_quality: bool = Field(
        False,
        description="count a front photo only if it also passes the anti-spoof / blur / NSFW checks (the reference "
        "service has no such checks, hence off by default here; /v1/faces/verify has it on)",
    )


class CompareFacesResponse(Answer):
    user_id: str
    matched: bool
    threshold: float
    required_matches: int
    matches: int
    scores: list[float | None] = Field(description="Score of front_image1..3 against back_image (null: no face).")
    model_id: str
    details: list[ProbeOut] = Field(description="Each front photo: score, whether it matched and why not, checks.")
    back_image: ReferenceOut
