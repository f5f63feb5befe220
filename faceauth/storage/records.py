"""The values the face index and the Face API pass around: stored rows, matches and what a search leaves out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class FaceRecord:
    """One stored revision of a face. `row_id` is the Milvus primary key (unique per revision)."""

    row_id: str
    tenant: str
    face_id: str
    object_key: str
    model_id: str
    created_at_ms: int
    subject_id: str = ""  # empty: the face is its own subject

    def __post_init__(self) -> None:
        if not self.subject_id:
            object.__setattr__(self, "subject_id", self.face_id)


@dataclass(frozen=True)
class Match:
    face_id: str
    score: float
    subject_id: str = ""


GroupBy = Literal["face", "subject"]


@dataclass(frozen=True)
class Exclusion:
    """Rows a search must not return: a subject's faces and one face id."""

    subject_id: str
    face_id: str


@dataclass(frozen=True)
class TenantVectors:
    records: list[FaceRecord]
    embeddings: np.ndarray  # (len(records), dim) float32


class TooManyRows(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} rows")
        self.limit = limit
