"""Enrolment, search, get and delete: the orchestration between the ML service and the two stores.

Consistency rule: a face is in both stores or in neither. Each revision of a face has its own image key
(``tenant/face_id/<revision>``) and its own vector row, so a write never overwrites anything that a reader,
or a rollback, still needs:

- insert/upsert: image first, then the vector; if the vector fails, the new image is removed again.
  An upsert removes the previous revision only after the new one is complete in both stores.
- delete: the vector first (the face stops matching at once), then the images; a retry finishes the job.
- Any write first tidies what an earlier crash may have left under the face's prefix (images no vector
  points to, older duplicate rows), so one face never drifts.

Writes to the same (tenant, face_id) are serialised in this process, which also makes "insert answers 409 if the
id exists" exact here. Several API replicas writing the same id at the same instant can still race (Milvus has no
conditional insert); the tidy-up step above keeps even that case consistent (newest revision wins).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from faceauth.client import Analysis, MLClient, MLImageRejected, MLServiceUnavailable
from faceauth.config import APISettings
from faceauth.kit.errors import AppError
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.objects import ObjectStore
from faceauth.storage.vectors import FaceIndex, FaceRecord, Match

log = logging.getLogger(__name__)

# An image no vector points to is a leftover only once it is older than any request that may still be
# completing it (another replica between its two writes); younger ones are left alone.
ORPHAN_GRACE_MS = 5 * 60 * 1000
# Longer key segments (only tenants can be: ids are at most 128 characters) are shortened, see _key_segment.
_SEGMENT_KEEP_BYTES = 200

_FACE_ISSUES = {"no_face": "no_face_detected", "face_too_small": "face_too_small", "multiple_faces": "multiple_faces"}


@dataclass(frozen=True)
class Enrolment:
    analysis: Analysis
    record: FaceRecord


@dataclass
class ReembedReport:
    reembedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "tenant/face_id" -> error code


@dataclass(frozen=True)
class SearchOutcome:
    analysis: Analysis
    matches: list[Match]
    skipped_reason: str | None


def sniff_content_type(data: bytes) -> str:
    """The image type from its magic bytes (what the ML service accepted), not the client's claim."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"BM"):
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return "application/octet-stream"


def revision_key(tenant: str, face_id: str, now_ms: int) -> str:
    # Zero-padded milliseconds sort revisions by age; the random tail keeps two writes in one ms apart.
    return f"{face_prefix(tenant, face_id)}{now_ms:013d}-{uuid.uuid4().hex[:12]}"


def face_prefix(tenant: str, face_id: str) -> str:
    return f"{_key_segment(tenant)}/{face_id}/"


def _key_segment(name: str) -> str:
    """`name` as one object-key segment. Stores take at most 255 bytes per segment and a tenant may have 256
    characters: a long one keeps its start and gains a digest. "~" is not an id character, so a shortened
    name never equals a real one."""
    if len(name.encode()) <= _SEGMENT_KEEP_BYTES:
        return name
    return f"{name[:160]}~{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def _revision_ms(key: str) -> int | None:
    try:
        return int(key.rsplit("/", 1)[-1].split("-", 1)[0])
    except ValueError:
        return None


def _unavailable(exc: StorageUnavailable, doing: str) -> AppError:
    store = "vector_store" if exc.store == "vectors" else "object_store"
    name = "Milvus" if exc.store == "vectors" else "the object store"
    return AppError(
        503, f"{store}_unavailable", f"{name} is unavailable ({doing}); retry the request", headers={"Retry-After": "1"}
    )


def _ml_error(exc: MLServiceUnavailable | MLImageRejected) -> AppError:
    headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
    return AppError(exc.status, exc.code, exc.message, headers=headers)


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class FaceService:
    def __init__(self, index: FaceIndex, objects: ObjectStore, ml: MLClient, settings: APISettings) -> None:
        self.index = index
        self.objects = objects
        self.ml = ml
        self.settings = settings
        self._locks = KeyedLocks()

    # -- the ML service -------------------------------------------------------------------------------------

    async def analyze(self, image: bytes, request_id: str) -> Analysis:
        try:
            return await self.ml.analyze(image, request_id=request_id)
        except (MLServiceUnavailable, MLImageRejected) as exc:
            raise _ml_error(exc) from None

    @staticmethod
    def _require_usable(analysis: Analysis) -> np.ndarray:
        if analysis.passed and analysis.embedding is not None:
            return analysis.embedding
        reasons = analysis.reasons or ["no_face"]
        face_issue = next((_FACE_ISSUES[r] for r in reasons if r in _FACE_ISSUES), None)
        code = face_issue if face_issue and len(reasons) == 1 else "quality_check_failed"
        raise AppError(
            422,
            code,
            f"the photo failed the quality check: {', '.join(reasons)}",
            details={"failed_checks": reasons, "imageQualityAssessment": analysis.assessment()},
        )

    # -- writes ---------------------------------------------------------------------------------------------

    async def enroll(self, tenant: str, face_id: str, image: bytes, *, replace: bool, request_id: str) -> Enrolment:
        analysis = await self.analyze(image, request_id)
        embedding = self._require_usable(analysis)
        async with self._locks.hold((tenant, face_id)):
            existing = await self._tidy(tenant, face_id)
            if existing and not replace:
                raise AppError(
                    409,
                    "face_already_exists",
                    f"face {face_id!r} already exists in tenant {tenant!r}; use /v1/faces/upsert to replace it",
                )
            record = await self._store_revision(tenant, face_id, image, analysis.model_id, embedding, existing)
        return Enrolment(analysis, record)

    async def _store_revision(
        self, tenant: str, face_id: str, image: bytes, model_id: str, embedding: np.ndarray, existing: list[FaceRecord]
    ) -> FaceRecord:
        """A new revision in both stores, then the replaced ones removed. Call with the face's lock held."""
        now_ms = int(time.time() * 1000)
        key = revision_key(tenant, face_id, now_ms)
        record = FaceRecord(
            row_id=key, tenant=tenant, face_id=face_id, object_key=key, model_id=model_id, created_at_ms=now_ms
        )
        await self._write_both(record, image, embedding)
        if existing:
            await self._drop_revisions(tenant, existing, rollback=record)
        return record

    async def reembed(self, record: FaceRecord, request_id: str) -> FaceRecord | None:
        """Embed a stored face again from its stored image (after a model change); None if it changed meanwhile.

        The quality checks are not applied again: the photo passed them at enrolment; only a face is required.
        """
        async with self._locks.hold((record.tenant, record.face_id)):
            current = await self._tidy(record.tenant, record.face_id)
            if not current or current[0].row_id != record.row_id:
                return None  # deleted or replaced since it was listed
            try:
                image = (await self.objects.get(record.object_key)).data
            except StorageUnavailable as exc:
                raise _unavailable(exc, "reading the image") from None
            analysis = await self.analyze(image, request_id)
            if analysis.embedding is None:
                raise AppError(422, "no_face_detected", f"the new model finds no face in {record.object_key}")
            return await self._store_revision(
                record.tenant, record.face_id, image, analysis.model_id, analysis.embedding, current
            )

    async def reembed_all(self, model_id: str, *, batch_size: int = 64) -> ReembedReport:
        """Re-embed every face whose vector comes from another model than `model_id` (the ML service's now)."""
        report = ReembedReport()
        skip: set[str] = set()  # rows that failed: not retried in this run
        while True:
            rows = [
                r
                for r in await self.index.rows_of_other_models(model_id, batch_size + len(skip))
                if r.row_id not in skip
            ]
            if not rows:
                return report
            for row in rows[:batch_size]:
                try:
                    done = await self.reembed(row, request_id=f"reembed-{uuid.uuid4().hex[:12]}")
                except AppError as exc:
                    if exc.status == 503:
                        raise
                    skip.add(row.row_id)
                    report.failed[f"{row.tenant}/{row.face_id}"] = exc.code
                    continue
                except ObjectNotFound:
                    skip.add(row.row_id)
                    report.failed[f"{row.tenant}/{row.face_id}"] = "image_missing"
                    continue
                if done is None:
                    skip.add(row.row_id)  # replaced or deleted meanwhile; whatever replaced it is re-listed
                    continue
                if done.model_id != model_id:
                    raise AppError(
                        409, "model_changed", f"the ML service now embeds with {done.model_id}, not {model_id}"
                    )
                report.reembedded += 1

    async def _write_both(self, record: FaceRecord, image: bytes, embedding: np.ndarray) -> None:
        try:
            await self.objects.put(record.object_key, image, sniff_content_type(image))
        except StorageUnavailable as exc:
            # A put that timed out may still have landed: make sure no image stays without its vector.
            await self._forget_image(record.object_key)
            raise _unavailable(exc, "storing the image") from None
        try:
            await self.index.add(record, embedding)
        except BaseException as exc:
            # An insert that timed out may still be applied: take the row back before the image, so neither
            # stays alone. If Milvus is down for both, the row without image is removed by the next write.
            await self._forget_row(record)
            await self._forget_image(record.object_key)
            if isinstance(exc, StorageUnavailable):
                raise _unavailable(exc, "storing the vector") from None
            raise

    async def _drop_revisions(self, tenant: str, old: list[FaceRecord], rollback: FaceRecord) -> None:
        """After an upsert: remove the replaced revisions; if their vectors cannot go, undo the new one."""
        try:
            await self.index.remove(tenant, [r.row_id for r in old])
        except StorageUnavailable as exc:
            try:
                await self.index.remove(tenant, [rollback.row_id])
            except StorageUnavailable:
                # Two complete revisions remain; the next write to this face keeps the newest (see _tidy).
                log.error("upsert of %s/%s: could not roll back the new revision", tenant, rollback.face_id)
                raise _unavailable(exc, "replacing the vector") from None
            await self._forget_image(rollback.object_key)
            raise _unavailable(exc, "replacing the vector") from None
        try:
            for record in old:
                await self.objects.delete(record.object_key)
        except StorageUnavailable:
            # The face is consistent (new vector, new image); the old image is a leftover no vector points to.
            raise AppError(
                503,
                "object_store_unavailable",
                "the face was replaced, but its previous image could not be removed yet: retry to finish",
                headers={"Retry-After": "1"},
            ) from None

    async def _forget_row(self, record: FaceRecord) -> None:
        try:
            await self.index.remove(record.tenant, [record.row_id])
        except StorageUnavailable as exc:
            log.error("could not remove row %s after a failed write: %s", record.row_id, exc.detail)

    async def _forget_image(self, key: str) -> None:
        try:
            await self.objects.delete(key)
        except StorageUnavailable as exc:
            # Left for the next write of this face to remove: no vector points to it.
            log.error("could not remove image %s after a failed write: %s", key, exc.detail)

    async def _tidy(self, tenant: str, face_id: str) -> list[FaceRecord]:
        """The face's current revision (0 or 1), after removing what an interrupted write left behind:
        vector rows whose image is missing, older duplicate revisions, and images no vector points to."""
        try:
            rows = await self.index.find(tenant, face_id)
            keys = set(await self.objects.list(face_prefix(tenant, face_id)))
        except StorageUnavailable as exc:
            raise _unavailable(exc, "reading the face") from None
        complete = [r for r in rows if r.object_key in keys]  # newest first
        doomed = [r for r in rows if r.object_key not in keys] + complete[1:]
        if doomed:
            log.warning("%s/%s: removing %d incomplete or replaced revision(s)", tenant, face_id, len(doomed))
            try:
                await self.index.remove(tenant, [r.row_id for r in doomed])
            except StorageUnavailable as exc:
                raise _unavailable(exc, "tidying the face") from None
        current = complete[:1]
        referenced = {r.object_key for r in current}
        newest_ms = current[0].created_at_ms if current else None
        now_ms = int(time.time() * 1000)
        for key in sorted(keys - referenced):
            born = _revision_ms(key)
            # Older than the live revision: a leftover for sure. Newer: maybe another replica's write in
            # progress, so only once it is older than any request could be.
            if born is None or (newest_ms is not None and born < newest_ms) or now_ms - born > ORPHAN_GRACE_MS:
                await self._forget_image(key)
        return current

    async def delete(self, tenant: str, face_id: str) -> None:
        async with self._locks.hold((tenant, face_id)):
            try:
                rows = await self.index.find(tenant, face_id)
                keys = await self.objects.list(face_prefix(tenant, face_id))
            except StorageUnavailable as exc:
                raise _unavailable(exc, "reading the face") from None
            if not rows and not keys:
                raise _not_found(tenant, face_id)
            if rows:
                try:
                    await self.index.remove(tenant, [r.row_id for r in rows])
                except StorageUnavailable as exc:
                    raise _unavailable(exc, "removing the vector") from None
            try:
                for key in keys:
                    await self.objects.delete(key)
            except StorageUnavailable:
                raise AppError(
                    503,
                    "object_store_unavailable",
                    "the face no longer matches, but its image could not be removed yet: retry the delete to finish",
                    headers={"Retry-After": "1"},
                ) from None

    # -- reads ----------------------------------------------------------------------------------------------

    async def get(self, tenant: str, face_id: str) -> FaceRecord:
        try:
            rows = await self.index.find(tenant, face_id)
        except StorageUnavailable as exc:
            raise _unavailable(exc, "reading the face") from None
        if not rows:
            raise _not_found(tenant, face_id)
        return rows[0]

    async def search(
        self, tenant: str, image: bytes, *, top_k: int, threshold: float, request_id: str
    ) -> SearchOutcome:
        analysis = await self.analyze(image, request_id)
        if not analysis.passed or analysis.embedding is None:
            # The reference answers 200 with no matches here; the assessment says why.
            return SearchOutcome(analysis, [], "quality_check_failed")
        try:
            matches = await self.index.search(
                tenant, analysis.embedding, model_id=analysis.model_id, limit=top_k, threshold=threshold
            )
        except StorageUnavailable as exc:
            raise _unavailable(exc, "searching") from None
        return SearchOutcome(analysis, matches, None)


def _not_found(tenant: str, face_id: str) -> AppError:
    return AppError(404, "face_not_found", f"no face {face_id!r} in tenant {tenant!r}")


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
