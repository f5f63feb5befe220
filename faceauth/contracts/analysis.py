"""The ML service's answers about a photo: what it detected, what it judged, and the embedding.

The ML service builds its response bodies from these models, the ML client parses the same models back, and the
Face API passes parts of them through (`imageQualityAssessment` is an `Assessment`, detected faces are `Face`s).
Fields the service always sends but a reader can do without have defaults, so the client stays tolerant of an
older service.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PlainSerializer, PlainValidator, WithJsonSchema

FaceIssue = Literal["no_face", "face_too_small", "multiple_faces"]


def _as_vector(value: Any) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float32)
    if vector.ndim != 1:
        raise ValueError("an embedding is a flat list of numbers")
    return vector


# An embedding: a float32 array in Python, a list of numbers (7 decimals are plenty for float32) in JSON.
Vector = Annotated[
    np.ndarray,
    PlainValidator(_as_vector),
    PlainSerializer(lambda v: [round(float(x), 7) for x in v], return_type=list[float]),
    WithJsonSchema({"type": "array", "items": {"type": "number"}}),
]


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


class Assessment(BaseModel):
    """The quality verdict of one photo (the Face API's `imageQualityAssessment`)."""

    passed: bool = Field(description="nsfw.is_safe and not spoof.is_spoof and blur.is_sharp (and a usable face).")
    nsfw: NsfwResult | None = Field(description="null when the NSFW check is turned off (see skipped_checks).")
    spoof: SpoofResult | None = Field(description="null when there is no usable face.")
    blur: BlurResult | None = Field(description="null when there is no usable face.")
    face_detected: bool
    faces_count: int
    reasons: list[str] = Field(description="Why it did not pass: nsfw, spoof, blur, no_face, face_too_small, ...")
    skipped_checks: list[Literal["nsfw", "spoof"]] = Field(
        default_factory=list,
        description="Checks that did not run and do not count in `passed`: with aligned=true, spoof (anti-spoofing "
        "needs the surroundings of the face, which a tight crop does not have); nsfw when the deployment turned "
        "it off (ML_SERVICE_NSFW_ENABLED=false, or the permissive model profile).",
    )


class FaceAnalysis(BaseModel):
    """One face of a photo analysed with faces=all: where it is, what its checks found, its embedding."""

    face: Face
    passed: bool = Field(description="The photo's checks (nsfw) and this face's (spoof, blur) all passed.")
    reasons: list[str] = Field(description="Why it did not pass: nsfw, spoof, blur.")
    spoof: SpoofResult | None = Field(None, description="null when the check did not run (aligned=true).")
    blur: BlurResult | None = None
    embedding: Vector | None = Field(None, description="L2-normalised vector of this face.")

    @property
    def usable(self) -> bool:
        return self.passed and self.embedding is not None


class Analysis(Assessment):
    """Assessment and embedding of the subject face in one answer (`/v1/analyze`, what the Face API calls)."""

    embedding: Vector | None = Field(description="L2-normalised vector of the subject face, or null.")
    embedding_dim: int = 0
    model_id: str = Field(description="Identifies the vector space; never compare vectors of different ids.")
    face: Face | None = None
    faces: list[FaceAnalysis] | None = Field(
        None,
        description="faces=all: every face at least ML_SERVICE_FACE_AREA_THRESHOLD of the photo, largest first, "
        "at most ML_SERVICE_MAX_FACES (the first is `face`); null otherwise.",
    )
    models: dict[str, str | None] = Field(default_factory=dict, description="Id of each model that ran.")
    timings_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Per step. In a batch, nsfw/spoof/embed include the one run shared by the whole batch.",
    )

    @property
    def usable(self) -> bool:
        """Passed every check that ran, and has an embedding."""
        return self.passed and self.embedding is not None

    def assessment(self) -> Assessment:
        """The verdict alone (the `imageQualityAssessment` block of the Face API's answers)."""
        return Assessment.model_construct(**{name: getattr(self, name) for name in Assessment.model_fields})


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


class BatchAnalysis(BaseModel):
    results: list[BatchItemOk | BatchItemFailed] = Field(description="One entry per file, in request order.")


class DetectedFaces(BaseModel):
    """Every face of a photo (`/v1/detect`)."""

    width: int
    height: int
    faces_count: int
    faces: list[Face] = Field(description="Every face, largest first.")
