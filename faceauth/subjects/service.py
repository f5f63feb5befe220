"""Subjects: a person with one or more enrolled faces. Listing (cursor pages), one subject, deleting one."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from faceauth.faces.repository import FaceRepository
from faceauth.kit.errors import AppError
from faceauth.storage.records import FaceRecord
from faceauth.storage.vectors import FaceIndex


@dataclass(frozen=True)
class Subject:
    subject_id: str
    faces: list[FaceRecord]  # the current revision of each face, by face id


@dataclass(frozen=True)
class SubjectPage:
    subjects: list[Subject]
    next_cursor: str | None


def encode_cursor(subject_id: str) -> str:
    return base64.urlsafe_b64encode(subject_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        subject_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        subject_id = ""
    # urlsafe_b64decode skips characters outside its alphabet: only a cursor that round-trips is one of ours.
    if not subject_id or encode_cursor(subject_id) != cursor:
        raise AppError(422, "invalid_cursor", "the cursor is not one this API gave out")
    return subject_id


def _current_faces(rows: list[FaceRecord]) -> list[FaceRecord]:
    """One record per face id: its newest revision (a face being replaced has two for a moment)."""
    newest: dict[str, FaceRecord] = {}
    for row in rows:
        if row.face_id not in newest or row.created_at_ms > newest[row.face_id].created_at_ms:
            newest[row.face_id] = row
    return [newest[face_id] for face_id in sorted(newest)]


class SubjectService:
    def __init__(self, index: FaceIndex, repository: FaceRepository, *, max_faces_per_subject: int = 10) -> None:
        self.index = index
        self.repository = repository
        self.max_faces_per_subject = max_faces_per_subject

    # -- fixing identities: each face moves as its own write (a new revision under the new subject) -----------

    async def move_face(self, tenant: str, face_id: str, subject_id: str) -> FaceRecord:
        """Move one face to another subject (a new one, or one that has room); 404 for an unknown face."""
        await self.repository.get(tenant, face_id)
        await self._require_room(tenant, subject_id, adding={face_id})
        async with self.repository.editing(tenant, face_id) as face:
            if face.current is not None and face.current.subject_id == subject_id:
                return face.current
            return await face.move(subject_id)

    async def rename(self, tenant: str, subject_id: str, new_subject_id: str) -> Subject:
        """Every face of the subject under a new subject id that has no faces yet (409 otherwise: merge)."""
        subject = await self.get(tenant, subject_id)
        if new_subject_id != subject_id and await self.index.subject_faces(tenant, new_subject_id):
            raise AppError(
                409,
                "subject_exists",
                f"subject {new_subject_id!r} already has faces in tenant {tenant!r}: merge into it instead",
            )
        return await self._move_all(tenant, subject, new_subject_id)

    async def merge(self, tenant: str, subject_id: str, into: str) -> Subject:
        """Every face of `subject_id` moved into the existing subject `into` (404 when either is unknown)."""
        if into == subject_id:
            raise AppError(422, "validation_error", "a subject cannot be merged into itself", details={"field": "into"})
        subject = await self.get(tenant, subject_id)
        await self.get(tenant, into)
        await self._require_room(tenant, into, adding={f.face_id for f in subject.faces})
        return await self._move_all(tenant, subject, into)

    async def _move_all(self, tenant: str, subject: Subject, target: str) -> Subject:
        # One face at a time: interrupted (a store down), the faces not yet moved are still under the old
        # subject, and the same call again finishes the job.
        for face in subject.faces:
            try:
                async with self.repository.editing(tenant, face.face_id) as edit:
                    if edit.current is not None and edit.current.subject_id == subject.subject_id:
                        await edit.move(target)
            except AppError as exc:
                if exc.status != 404:  # deleted meanwhile: nothing to move
                    raise
        return await self.get(tenant, target)

    async def _require_room(self, tenant: str, subject_id: str, *, adding: set[str]) -> None:
        present = {r.face_id for r in await self.index.subject_faces(tenant, subject_id)}
        total = len(present | adding)
        if total > self.max_faces_per_subject:
            raise AppError(
                409,
                "subject_face_limit",
                f"subject {subject_id!r} would have {total} faces "
                f"(FACEAUTH_MAX_FACES_PER_SUBJECT={self.max_faces_per_subject})",
            )

    async def list(self, tenant: str, *, cursor: str | None, limit: int) -> SubjectPage:
        after = decode_cursor(cursor) if cursor else None
        groups = await self.index.list_subjects(tenant, after=after, limit=limit + 1)
        subjects = [Subject(rows[0].subject_id, _current_faces(rows)) for rows in groups]
        more = len(subjects) > limit
        subjects = subjects[:limit]
        return SubjectPage(subjects, encode_cursor(subjects[-1].subject_id) if more else None)

    async def get(self, tenant: str, subject_id: str) -> Subject:
        rows = await self.index.subject_faces(tenant, subject_id)
        if not rows:
            raise _not_found(tenant, subject_id)
        return Subject(subject_id, _current_faces(rows))

    async def delete(self, tenant: str, subject_id: str) -> list[str]:
        """Delete every face of the subject (each as /v1/faces/delete does: vector, then images); their ids."""
        subject = await self.get(tenant, subject_id)
        deleted = []
        for face in subject.faces:
            try:
                await self.repository.delete(tenant, face.face_id)
            except AppError as exc:
                if exc.status != 404:  # 404: deleted meanwhile by another request, which is the goal
                    raise
            deleted.append(face.face_id)
        return deleted


def _not_found(tenant: str, subject_id: str) -> AppError:
    return AppError(404, "subject_not_found", f"no subject {subject_id!r} in tenant {tenant!r}")
