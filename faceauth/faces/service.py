"""Enrolment (one face or a batch), 1:N search, get, delete, detection and image links of a tenant's faces.

The orchestration between the ML service (through the photo analyzer) and the stores (through the repository,
which keeps a face in both stores or in neither): the checks an enrolment must pass, in order, live here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceauth.config import APISettings
from faceauth.contracts.analysis import Analysis, FaceAnalysis
from faceauth.faces.repository import FaceRepository
from faceauth.images.service import ImageService
from faceauth.kit.errors import AppError
from faceauth.photos.analyzer import Analysed, PhotoAnalyzer
from faceauth.photos.sources import Photo
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.records import Exclusion, FaceRecord, GroupBy, Match
from faceauth.storage.vectors import FaceIndex
from faceauth.web.handlers import storage_unavailable

_FACE_ISSUES = {"no_face": "no_face_detected", "face_too_small": "face_too_small", "multiple_faces": "multiple_faces"}


@dataclass(frozen=True)
class Enrolment:
    analysis: Analysis
    record: FaceRecord


@dataclass(frozen=True)
class BatchItem:
    face_id: str
    subject_id: str | None
    photo: Photo | AppError  # AppError: the photo was refused where it entered (bad base64, bad URL)


@dataclass(frozen=True)
class BatchOutcome:
    """One item of a batch: an enrolment, or the error it met (its own status and code)."""

    face_id: str
    enrolment: Enrolment | None = None
    error: AppError | None = None


@dataclass(frozen=True)
class SearchOutcome:
    analysis: Analysis
    matches: list[Match]
    skipped_reason: str | None


@dataclass(frozen=True)
class RecognizedFace:
    """One face of a recognised photo: what the ML service found, and its matches (none when it is unusable)."""

    face: FaceAnalysis
    matches: list[Match]
    skipped_reason: str | None


@dataclass(frozen=True)
class RecognizeOutcome:
    analysis: Analysis
    faces: list[RecognizedFace]


def require_usable(analysis: Analysis) -> np.ndarray:
    """The embedding of a photo fit to enrol; 422 naming the failed checks otherwise."""
    if analysis.usable:
        return analysis.embedding  # type: ignore[return-value]
    reasons = analysis.reasons or ["no_face"]
    face_issue = next((_FACE_ISSUES[r] for r in reasons if r in _FACE_ISSUES), None)
    code = face_issue if face_issue and len(reasons) == 1 else "quality_check_failed"
    raise AppError(
        422,
        code,
        f"the photo failed the quality check: {', '.join(reasons)}",
        details={"failed_checks": reasons, "imageQualityAssessment": analysis.assessment().model_dump()},
    )


class FaceService:
    def __init__(
        self,
        repository: FaceRepository,
        index: FaceIndex,
        analyzer: PhotoAnalyzer,
        images: ImageService,
        settings: APISettings,
    ) -> None:
        self.repository = repository
        self.index = index
        self.analyzer = analyzer
        self.images = images
        self.settings = settings

    # -- writes ---------------------------------------------------------------------------------------------

    async def enroll(
        self,
        tenant: str,
        face_id: str,
        photo: Photo,
        *,
        subject_id: str | None = None,
        replace: bool,
        dedup: bool = False,
        aligned: bool = False,
    ) -> Enrolment:
        analysed = await self.analyzer.analyze(photo, tenant=tenant, aligned=aligned)
        return await self._store(tenant, face_id, subject_id, analysed, replace=replace, dedup=dedup)

    async def batch_insert(
        self, tenant: str, items: list[BatchItem], *, replace: bool, dedup: bool, aligned: bool
    ) -> list[BatchOutcome]:
        """Each item on its own: one bad photo or one taken id fails that item only. The photos are analysed by
        the ML service in one batch call; if the ML service is down the whole batch answers 503 (nothing written)."""
        seen: set[str] = set()
        photos: list[Photo | AppError] = []
        for item in items:
            repeated = item.face_id in seen
            seen.add(item.face_id)
            photos.append(
                AppError(422, "duplicate_id_in_batch", "this id appears earlier in the batch")
                if repeated
                else item.photo
            )
        analysed = await self.analyzer.analyze_each(photos, tenant=tenant, aligned=aligned)

        async def enrol_one(item: BatchItem, result: Analysed | AppError) -> BatchOutcome:
            try:
                if isinstance(result, AppError):
                    raise result
                enrolment = await self._store(
                    tenant, item.face_id, item.subject_id, result, replace=replace, dedup=dedup
                )
                return BatchOutcome(item.face_id, enrolment=enrolment)
            except AppError as exc:
                return BatchOutcome(item.face_id, error=exc)
            except StorageUnavailable as exc:
                return BatchOutcome(item.face_id, error=storage_unavailable(exc))

        return list(await asyncio.gather(*(enrol_one(i, r) for i, r in zip(items, analysed, strict=True))))

    async def _store(
        self, tenant: str, face_id: str, subject_id: str | None, analysed: Analysed, *, replace: bool, dedup: bool
    ) -> Enrolment:
        """Enrol an analysed photo: checks (quality, 409s, duplicate person, subject size), then both stores."""
        analysis = analysed.analysis
        embedding = require_usable(analysis)
        subject = subject_id or face_id
        async with self.repository.editing(tenant, face_id, tenant_lock=dedup) as face:
            if face.current and not replace:
                raise AppError(
                    409,
                    "face_already_exists",
                    f"face {face_id!r} already exists in tenant {tenant!r}; use /v1/faces/upsert to replace it",
                )
            if dedup:
                await self._refuse_duplicate(tenant, face_id, subject, analysis.model_id, embedding)
            if subject_id:
                await self._require_room(tenant, subject, face_id)
            record = await face.write(analysed.image, analysis.model_id, embedding, subject_id=subject)
        return Enrolment(analysis, record)

    async def _refuse_duplicate(
        self, tenant: str, face_id: str, subject_id: str, model_id: str, embedding: np.ndarray
    ) -> None:
        """409 when the photo matches a face of another subject of the tenant: one person, two identities."""
        threshold = self.settings.milvus_search_threshold
        matches = await self.index.search(
            tenant,
            embedding,
            model_id=model_id,
            limit=1,
            threshold=threshold,
            group_by="subject",
            exclude=Exclusion(subject_id=subject_id, face_id=face_id),
        )
        if matches:
            best = matches[0]
            raise AppError(
                409,
                "duplicate_face",
                f"this person is already enrolled in tenant {tenant!r} as {best.face_id!r} "
                f"(subject {best.subject_id!r}, score {best.score:.3f} >= {threshold})",
                details={
                    "matched_id": best.face_id,
                    "matched_subject_id": best.subject_id,
                    "score": round(best.score, 6),
                    "threshold": threshold,
                },
            )

    async def _require_room(self, tenant: str, subject_id: str, face_id: str) -> None:
        rows = await self.index.subject_faces(tenant, subject_id)
        others = {r.face_id for r in rows} - {face_id}
        limit = self.settings.max_faces_per_subject
        if len(others) >= limit:
            raise AppError(
                409,
                "subject_face_limit",
                f"subject {subject_id!r} already has {len(others)} faces (FACEAUTH_MAX_FACES_PER_SUBJECT={limit})",
            )

    async def delete(self, tenant: str, face_id: str) -> None:
        await self.repository.delete(tenant, face_id)

    async def delete_many(self, tenant: str, face_ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete each face (one at a time, each both-or-neither); the deleted ids and the unknown ones."""
        deleted: list[str] = []
        not_found: list[str] = []
        for face_id in dict.fromkeys(face_ids):  # an id given twice is deleted once
            try:
                await self.repository.delete(tenant, face_id)
                deleted.append(face_id)
            except AppError as exc:
                if exc.code != "face_not_found":
                    raise
                not_found.append(face_id)
        return deleted, not_found

    # -- reads ----------------------------------------------------------------------------------------------

    async def get(self, tenant: str, face_id: str) -> FaceRecord:
        return await self.repository.get(tenant, face_id)

    async def search(
        self,
        tenant: str,
        photo: Photo,
        *,
        top_k: int,
        threshold: float,
        group_by: GroupBy = "face",
        aligned: bool = False,
    ) -> SearchOutcome:
        analysis = (await self.analyzer.analyze(photo, tenant=tenant, aligned=aligned)).analysis
        if not analysis.usable:
            # The reference answers 200 with no matches here; the assessment says why.
            return SearchOutcome(analysis, [], "quality_check_failed")
        matches = await self.index.search(
            tenant, analysis.embedding, model_id=analysis.model_id, limit=top_k, threshold=threshold, group_by=group_by
        )
        return SearchOutcome(analysis, matches, None)

    async def search_by_face(
        self, tenant: str, face_id: str, *, top_k: int, threshold: float, group_by: GroupBy
    ) -> tuple[str, list[Match]]:
        """The faces nearest a stored face (its other enrolments, possible duplicates), itself left out; 404 for
        an unknown face. The model id of its vector, and the matches."""
        record = await self.repository.get(tenant, face_id)
        stored = await self.index.vectors(tenant, model_id=record.model_id, face_id=face_id, max_rows=100)
        if not stored.records:
            raise AppError(404, "face_not_found", f"face {face_id!r} has no vector of its model in tenant {tenant!r}")
        newest = max(range(len(stored.records)), key=lambda i: stored.records[i].created_at_ms)
        # Searched by face and grouped here: the query face is the best face of its own subject, and leaving
        # it out must not leave out that subject's other faces. Room for a full subject per match wanted.
        wanted = top_k + 1 if group_by == "face" else top_k * self.settings.max_faces_per_subject + 1
        found = await self.index.search(
            tenant,
            stored.embeddings[newest],
            model_id=record.model_id,
            limit=min(wanted, 16384),
            threshold=threshold,
            group_by="face",
        )
        matches = [m for m in found if m.face_id != face_id]
        if group_by == "subject":
            best: dict[str, Match] = {}
            for match in matches:  # best first: the first face of each subject is its best
                best.setdefault(match.subject_id, match)
            matches = list(best.values())
        return record.model_id, matches[:top_k]

    async def search_by_embedding(
        self,
        tenant: str,
        embedding: list[float],
        *,
        model_id: str | None,
        top_k: int,
        threshold: float,
        group_by: GroupBy,
    ) -> tuple[str, list[Match]]:
        """The faces nearest a given vector of the model's dimension (normalised here: cosine needs no more)."""
        dim = self.settings.milvus_embedding_dim
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            raise AppError(
                422,
                "invalid_embedding",
                f"the embedding must be {dim} finite numbers (it has {vector.size})",
                details={"field": "embedding", "dimension": dim},
            )
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise AppError(422, "invalid_embedding", "the embedding is all zeros", details={"field": "embedding"})
        if model_id is None:
            model_id = await self.analyzer.embedder_model_id()
        matches = await self.index.search(
            tenant, vector / norm, model_id=model_id, limit=top_k, threshold=threshold, group_by=group_by
        )
        return model_id, matches

    async def recognize(
        self, tenant: str, photo: Photo, *, top_k: int, threshold: float, group_by: GroupBy, limit: int
    ) -> RecognizeOutcome:
        """Every face of the photo (largest first, at most `limit`), each searched like /v1/faces/search. The
        photo is analysed once; the searches run side by side. A face that fails its checks gets no matches."""
        analysis = (await self.analyzer.analyze(photo, tenant=tenant, every_face=True)).analysis
        faces = (analysis.faces or [])[:limit]

        async def recognize_one(face: FaceAnalysis) -> RecognizedFace:
            if not face.usable:
                return RecognizedFace(face, [], "quality_check_failed")
            matches = await self.index.search(
                tenant, face.embedding, model_id=analysis.model_id, limit=top_k, threshold=threshold, group_by=group_by
            )
            return RecognizedFace(face, matches, None)

        return RecognizeOutcome(analysis, list(await asyncio.gather(*(recognize_one(f) for f in faces))))

    async def detect(self, photo: Photo, *, tenant: str | None, every_face: bool = True) -> dict[str, Any]:
        """Every face (`every_face`), or the largest one only."""
        found = await self.analyzer.detect(photo, tenant=tenant)
        if not every_face:
            found["faces"] = found["faces"][:1]
        return found

    async def image_link(self, tenant: str, face_id: str, base_url: str) -> tuple[str, int]:
        """A link to the face's stored image that expires after FACEAUTH_IMAGE_LINK_SECONDS, and its expiry."""
        record = await self.repository.get(tenant, face_id)
        if not record.object_key:
            raise AppError(404, "image_not_stored", f"face {face_id!r} was stored without its image")
        return await self.images.link(record.object_key, base_url)
