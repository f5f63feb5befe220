"""Bodies of the subject endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from faceauth.faces.schemas import FaceRecordOut
from faceauth.kit.requests import Answer


class SubjectOut(BaseModel):
    subject_id: str
    faces: list[FaceRecordOut] = Field(description="The subject's faces, by face id.")


class SubjectResponse(Answer, SubjectOut):
    pass


class SubjectPageResponse(Answer):
    subjects: list[SubjectOut] = Field(description="In subject_id order.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SubjectDeleteResponse(Answer):
    subject_id: str
    deleted_faces: list[str] = Field(description="Ids of the faces removed (vectors and images).")
