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
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from faceauth.config import APISettings
from faceauth.images.links import ImageLinks
from faceauth.images.sources import ImageLoader, ImageSource
from faceauth.kit.errors import AppError
from faceauth.kit.imagetypes import sniff_content_type
from faceauth.ml_client import Analysis, MLClient, MLImageRejected, MLServiceUnavailable
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.keys import face_prefix, revision_key, revision_ms
from faceauth.storage.objects import ObjectStore
from faceauth.storage.records import Exclusion, FaceRecord, GroupBy, Match
from faceauth.storage.vectors import FaceIndex

log = logging.getLogger(__name__)

# An image no vector points to is a leftover only once it is older than any request that may still be
# completing it (another replica between its two writes); younger ones are left alone.
ORPHAN_GRACE_MS = 5 * 60 * 1000
# Held (per tenant) by enrolments with dedup=true, so two of them cannot both miss each other.
_DEDUP_LOCK = "\x00dedup"

_FACE_ISSUES = {"no_face": "no_face_detected", "face_too_small": "face_too_small", "multiple_faces": "multiple_faces"}


@dataclass(frozen=True)
class Enrolment:
    analysis: Analysis
    record: FaceRecord


@dataclass(frozen=True)
class BatchItem:
    face_id: str
    subject_id: str | None
    source: ImageSource


@dataclass(frozen=True)
class BatchOutcome:
    """One item of a batch: an enrolment, or the error it met (its own status and code)."""

    face_id: str
    enrolment: Enrolment | None = None
    error: AppError | None = None


@dataclass
class ReembedReport:
    reembedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "tenant/face_id" -> error code


@dataclass(frozen=True)
class RepairCounts:
    """What `FaceService.repair_face` removed."""

    rows_without_image: int = 0  # vector rows whose image was missing
    replaced_rows: int = 0  # complete revisions older than the face's newest one
    orphan_images: int = 0  # images no vector row pointed to (then or once the replaced rows were gone)


@dataclass(frozen=True)
class SearchOutcome:
    analysis: Analysis
    matches: list[Match]
    skipped_reason: str | None


def storage_error(exc: StorageUnavailable, doing: str) -> AppError:
    store = "vector_store" if exc.store == "vectors" else "object_store"
    name = "Milvus" if exc.store == "vectors" else "the object store"
    return AppError(
        503, f"{store}_unavailable", f"{name} is unavailable ({doing}); retry the request", headers={"Retry-After": "1"}
    )


def ml_error(exc: MLServiceUnavailable | MLImageRejected) -> AppError:
    # Every 503 says when to retry, also when the ML service could not be reached at all (it gave no header).
    retry_after = exc.retry_after or ("1" if exc.status == 503 else None)
    headers = {"Retry-After": retry_after} if retry_after else None
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
    def __init__(
        self,
        index: FaceIndex,
        objects: ObjectStore,
        ml: MLClient,
        settings: APISettings,
        images: ImageLoader | None = None,
    ) -> None:
        self.index = index
        self.objects = objects
        self.ml = ml
        self.settings = settings
        self._images = images
        self.links = ImageLinks(objects)
        self._locks = KeyedLocks()

    @property
    def images(self) -> ImageLoader:
        if self._images is None:
            raise RuntimeError("this FaceService was built without an ImageLoader")
        return self._images

    # -- the ML service -------------------------------------------------------------------------------------

    async def analyze(self, image: bytes, request_id: str, *, aligned: bool = False) -> Analysis:
        try:
            return await self.ml.analyze(image, request_id=request_id, aligned=aligned)
        except (MLServiceUnavailable, MLImageRejected) as exc:
            raise ml_error(exc) from None

    async def load_and_analyze(
        self, source: ImageSource, *, tenant: str | None, aligned: bool, request_id: str
    ) -> tuple[bytes, Analysis]:
        image = await self.images.load(source, tenant=tenant)
        try:
            return image, await self.analyze(image, request_id, aligned=aligned)
        except AppError as exc:
            if exc.status in (400, 413, 415, 422):  # the photo's fault: say which field it was
                exc.details = {**(exc.details or {}), "field": source.field}
            raise

    async def detect(self, source: ImageSource, *, tenant: str | None, request_id: str) -> dict[str, Any]:
        image = await self.images.load(source, tenant=tenant)
        try:
            return await self.ml.detect(image, request_id=request_id)
        except (MLServiceUnavailable, MLImageRejected) as exc:
            raise ml_error(exc) from None

    @staticmethod
    def require_usable(analysis: Analysis) -> np.ndarray:
        if analysis.passed and analysis.embedding is not None:
            return analysis.embedding
        reasons = analysis.reasons or ["no_face"]
        face_issue = next((_FACE_ISSUES[r] for r in reasons if r in _FACE_ISSUES), None)
        code = face_issue if face_issue and len(reasons) == 1 else "quality_check_failed"
        raise AppError(
            422,
            code,
            f"the photo failed the quality check: {', '.join(reasons)}",
            details={"failed_checks": reasons, "imageQualityAssessment": analysis.assessment().model_dump()},
        )

    # -- writes ---------------------------------------------------------------------------------------------

    async def enroll(
        self,
        tenant: str,
        face_id: str,
        source: ImageSource,
        *,
        subject_id: str | None = None,
        replace: bool,
        dedup: bool = False,
        aligned: bool = False,
        request_id: str,
    ) -> Enrolment:
        image, analysis = await self.load_and_analyze(source, tenant=tenant, aligned=aligned, request_id=request_id)
        return await self.store(tenant, face_id, subject_id, image, analysis, replace=replace, dedup=dedup)

    async def store(
        self,
        tenant: str,
        face_id: str,
        subject_id: str | None,
        image: bytes,
        analysis: Analysis,
        *,
        replace: bool,
        dedup: bool,
    ) -> Enrolment:
        """Enrol an analysed photo: checks (quality, 409s, duplicate person, subject size), then both stores."""
        embedding = self.require_usable(analysis)
        subject = subject_id or face_id
        # Lock order: the tenant's dedup lock, then the face's (nothing takes them the other way round).
        dedup_lock = self._locks.hold((tenant, _DEDUP_LOCK)) if dedup else nullcontext()
        async with dedup_lock, self._locks.hold((tenant, face_id)):
            existing = await self._tidy(tenant, face_id)
            if existing and not replace:
                raise AppError(
                    409,
                    "face_already_exists",
                    f"face {face_id!r} already exists in tenant {tenant!r}; use /v1/faces/upsert to replace it",
                )
            if dedup:
                await self._refuse_duplicate(tenant, face_id, subject, analysis.model_id, embedding)
            if subject_id:
                await self._require_room(tenant, subject, face_id)
            record = await self._store_revision(
                tenant, face_id, image, analysis.model_id, embedding, existing, subject_id=subject
            )
        return Enrolment(analysis, record)

    async def batch_insert(
        self,
        tenant: str,
        items: list[BatchItem],
        *,
        replace: bool,
        dedup: bool,
        aligned: bool,
        request_id: str,
    ) -> list[BatchOutcome]:
        """Each item on its own: one bad photo or one taken id fails that item only. The photos are analysed by
        the ML service in one batch call; if the ML service is down the whole batch answers 503 (nothing written)."""
        outcomes: list[BatchOutcome | None] = [None] * len(items)
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.face_id in seen:
                outcomes[i] = BatchOutcome(
                    item.face_id, error=AppError(422, "duplicate_id_in_batch", "this id appears earlier in the batch")
                )
            seen.add(item.face_id)
        pending = [i for i, o in enumerate(outcomes) if o is None]
        loaded = await self.images.load_many([items[i].source for i in pending], tenant=tenant)
        images: dict[int, bytes] = {}
        for i, result in zip(pending, loaded, strict=True):
            if isinstance(result, AppError):
                outcomes[i] = BatchOutcome(items[i].face_id, error=result)
            else:
                images[i] = result
        if images:
            try:
                analyses = await self.ml.analyze_batch(list(images.values()), request_id=request_id, aligned=aligned)
            except (MLServiceUnavailable, MLImageRejected) as exc:
                raise ml_error(exc) from None

            async def enrol_one(i: int, analysis: Analysis | MLImageRejected) -> None:
                item = items[i]
                try:
                    if isinstance(analysis, MLImageRejected):
                        raise ml_error(analysis)
                    enrolment = await self.store(
                        tenant, item.face_id, item.subject_id, images[i], analysis, replace=replace, dedup=dedup
                    )
                    outcomes[i] = BatchOutcome(item.face_id, enrolment=enrolment)
                except AppError as exc:
                    outcomes[i] = BatchOutcome(item.face_id, error=exc)

            await asyncio.gather(*(enrol_one(i, a) for i, a in zip(images, analyses, strict=True)))
        return [o for o in outcomes if o is not None]

    async def _refuse_duplicate(
        self, tenant: str, face_id: str, subject_id: str, model_id: str, embedding: np.ndarray
    ) -> None:
        """409 when the photo matches a face of another subject of the tenant: one person, two identities."""
        threshold = self.settings.milvus_search_threshold
        try:
            matches = await self.index.search(
                tenant,
                embedding,
                model_id=model_id,
                limit=1,
                threshold=threshold,
                group_by="subject",
                exclude=Exclusion(subject_id=subject_id, face_id=face_id),
            )
        except StorageUnavailable as exc:
            raise storage_error(exc, "checking for duplicates") from None
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
        try:
            rows = await self.index.subject_faces(tenant, subject_id)
        except StorageUnavailable as exc:
            raise storage_error(exc, "reading the subject") from None
        others = {r.face_id for r in rows} - {face_id}
        limit = self.settings.max_faces_per_subject
        if len(others) >= limit:
            raise AppError(
                409,
                "subject_face_limit",
                f"subject {subject_id!r} already has {len(others)} faces (FACEAUTH_MAX_FACES_PER_SUBJECT={limit})",
            )

    async def _store_revision(
        self,
        tenant: str,
        face_id: str,
        image: bytes,
        model_id: str,
        embedding: np.ndarray,
        existing: list[FaceRecord],
        *,
        subject_id: str,
    ) -> FaceRecord:
        """A new revision in both stores, then the replaced ones removed. Call with the face's lock held."""
        now_ms = int(time.time() * 1000)
        key = revision_key(tenant, face_id, now_ms)
        record = FaceRecord(
            row_id=key,
            tenant=tenant,
            face_id=face_id,
            object_key=key if self.settings.store_images else "",
            model_id=model_id,
            created_at_ms=now_ms,
            subject_id=subject_id,
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
            if not record.object_key:
                raise AppError(409, "image_not_stored", "this face was stored without its image: enrol it again")
            try:
                image = (await self.objects.get(record.object_key)).data
            except StorageUnavailable as exc:
                raise storage_error(exc, "reading the image") from None
            analysis = await self.analyze(image, request_id)
            if analysis.embedding is None:
                raise AppError(422, "no_face_detected", f"the new model finds no face in {record.object_key}")
            return await self._store_revision(
                record.tenant,
                record.face_id,
                image,
                analysis.model_id,
                analysis.embedding,
                current,
                subject_id=record.subject_id,
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
        """The image, then the vector. A record without object key keeps no image (FACEAUTH_STORE_IMAGES=false)."""
        if record.object_key:
            try:
                await self.objects.put(record.object_key, image, sniff_content_type(image))
            except StorageUnavailable as exc:
                # A put that timed out may still have landed: make sure no image stays without its vector.
                await self._forget_image(record.object_key)
                raise storage_error(exc, "storing the image") from None
        try:
            await self.index.add(record, embedding)
        except BaseException as exc:
            # An insert that timed out may still be applied: take the row back before the image, so neither
            # stays alone. If Milvus is down for both, the row without image is removed by the next write.
            await self._forget_row(record)
            await self._forget_image(record.object_key)
            if isinstance(exc, StorageUnavailable):
                raise storage_error(exc, "storing the vector") from None
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
                raise storage_error(exc, "replacing the vector") from None
            await self._forget_image(rollback.object_key)
            raise storage_error(exc, "replacing the vector") from None
        try:
            for record in old:
                if record.object_key:
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
        if not key:  # a face stored without its image
            return
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
            raise storage_error(exc, "reading the face") from None
        # A row without object key was stored without its image on purpose (FACEAUTH_STORE_IMAGES=false).
        complete = [r for r in rows if not r.object_key or r.object_key in keys]  # newest first
        doomed = [r for r in rows if r.object_key and r.object_key not in keys] + complete[1:]
        if doomed:
            log.warning("%s/%s: removing %d incomplete or replaced revision(s)", tenant, face_id, len(doomed))
            try:
                await self.index.remove(tenant, [r.row_id for r in doomed])
            except StorageUnavailable as exc:
                raise storage_error(exc, "tidying the face") from None
        current = complete[:1]
        referenced = {r.object_key for r in current}
        newest_ms = current[0].created_at_ms if current else None
        now_ms = int(time.time() * 1000)
        for key in sorted(keys - referenced):
            born = revision_ms(key)
            # Older than the live revision: a leftover for sure. Newer: maybe another replica's write in
            # progress, so only once it is older than any request could be.
            if born is None or (newest_ms is not None and born < newest_ms) or now_ms - born > ORPHAN_GRACE_MS:
                await self._forget_image(key)
        return current

    async def repair_face(self, tenant: str, face_id: str) -> RepairCounts:
        """Remove what interrupted writes left of one face, as every write of it does first (`_tidy`), under the
        face's lock so no write of this process is half-way meanwhile; for the orphan sweep."""
        prefix = face_prefix(tenant, face_id)
        async with self._locks.hold((tenant, face_id)):
            try:
                rows = await self.index.find(tenant, face_id)
                keys = set(await self.objects.list(prefix))
                current = await self._tidy(tenant, face_id)
                # _tidy only logs an image it could not delete: count what is really gone.
                left = set(await self.objects.list(prefix))
            except StorageUnavailable as exc:
                raise storage_error(exc, "repairing the face") from None
        gone = [r for r in rows if r not in current]
        missing = sum(bool(r.object_key) and r.object_key not in keys for r in gone)  # "": stored without image
        return RepairCounts(
            rows_without_image=missing, replaced_rows=len(gone) - missing, orphan_images=len(keys - left)
        )

    async def delete(self, tenant: str, face_id: str) -> None:
        async with self._locks.hold((tenant, face_id)):
            try:
                rows = await self.index.find(tenant, face_id)
                keys = await self.objects.list(face_prefix(tenant, face_id))
            except StorageUnavailable as exc:
                raise storage_error(exc, "reading the face") from None
            if not rows and not keys:
                raise _not_found(tenant, face_id)
            if rows:
                try:
                    await self.index.remove(tenant, [r.row_id for r in rows])
                except StorageUnavailable as exc:
                    raise storage_error(exc, "removing the vector") from None
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

    async def image_link(self, tenant: str, face_id: str, base_url: str) -> tuple[str, int]:
        """A link to the face's stored image that expires after FACEAUTH_IMAGE_LINK_SECONDS, and its expiry."""
        record = await self.get(tenant, face_id)
        if not record.object_key:
            raise AppError(404, "image_not_stored", f"face {face_id!r} was stored without its image")
        try:
            return await self.links.link(record.object_key, self.settings.image_link_seconds, base_url)
        except StorageUnavailable as exc:
            raise storage_error(exc, "signing the link") from None

    async def linked_image(self, token: str) -> tuple[bytes, str]:
        """The image a link grants (bytes, content type); 404 for an invalid or expired link or a gone image."""
        try:
            key = await self.links.open(token)
            stored = await self.objects.get(key)
        except ObjectNotFound:
            raise AppError(404, "link_invalid", "the image link is invalid or has expired") from None
        except StorageUnavailable as exc:
            raise storage_error(exc, "reading the image") from None
        return stored.data, stored.content_type

    async def get(self, tenant: str, face_id: str) -> FaceRecord:
        try:
            rows = await self.index.find(tenant, face_id)
        except StorageUnavailable as exc:
            raise storage_error(exc, "reading the face") from None
        if not rows:
            raise _not_found(tenant, face_id)
        return rows[0]

    async def search(
        self,
        tenant: str,
        source: ImageSource,
        *,
        top_k: int,
        threshold: float,
        group_by: GroupBy = "face",
        aligned: bool = False,
        request_id: str,
    ) -> SearchOutcome:
        _, analysis = await self.load_and_analyze(source, tenant=tenant, aligned=aligned, request_id=request_id)
        if not analysis.passed or analysis.embedding is None:
            # The reference answers 200 with no matches here; the assessment says why.
            return SearchOutcome(analysis, [], "quality_check_failed")
        try:
            matches = await self.index.search(
                tenant,
                analysis.embedding,
                model_id=analysis.model_id,
                limit=top_k,
                threshold=threshold,
                group_by=group_by,
            )
        except StorageUnavailable as exc:
            raise storage_error(exc, "searching") from None
        return SearchOutcome(analysis, matches, None)


def _not_found(tenant: str, face_id: str) -> AppError:
    return AppError(404, "face_not_found", f"no face {face_id!r} in tenant {tenant!r}")


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
