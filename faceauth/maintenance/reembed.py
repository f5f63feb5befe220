"""Re-embedding stored faces from their stored images, after the embedding model changed (`faceauth reembed`)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

from faceauth.faces.repository import FaceRepository
from faceauth.kit.errors import AppError
from faceauth.ml_client import MLImageRejected
from faceauth.photos.analyzer import PhotoAnalyzer
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.records import FaceRecord
from faceauth.storage.vectors import FaceIndex


@dataclass
class ReembedReport:
    reembedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # "tenant/face_id" -> error code
    already_there: int = 0  # a move: faces the target collection already held (enrolled again meanwhile)


class Reembedder:
    def __init__(self, repository: FaceRepository, analyzer: PhotoAnalyzer) -> None:
        self.repository = repository
        self.analyzer = analyzer

    async def reembed(self, record: FaceRecord, request_id: str | None = None) -> FaceRecord | None:
        """Embed a stored face again from its stored image; None if it changed since it was listed.

        The quality checks are not applied again: the photo passed them at enrolment; only a face is required.
        """
        async with self.repository.editing(record.tenant, record.face_id) as face:
            if face.current is None or face.current.row_id != record.row_id:
                return None  # deleted or replaced since it was listed
            if not record.object_key:
                raise AppError(409, "image_not_stored", "this face was stored without its image: enrol it again")
            image = await self.repository.image(record)
            analysis = await self.analyzer.analyze_stored(image, request_id=request_id)
            if analysis.embedding is None:
                raise AppError(422, "no_face_detected", f"the new model finds no face in {record.object_key}")
            return await face.write(image, analysis.model_id, analysis.embedding, subject_id=record.subject_id)

    async def reembed_all(self, model_id: str, *, batch_size: int = 64) -> ReembedReport:
        """Re-embed every face whose vector comes from another model than `model_id` (the ML service's now)."""
        report = ReembedReport()
        skip: set[str] = set()  # rows that failed: not retried in this run
        while True:
            listed = await self.repository.index.rows_of_other_models(model_id, batch_size + len(skip))
            rows = [r for r in listed if r.row_id not in skip]
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
                except MLImageRejected as exc:  # the new model's service refuses the stored image itself
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

    async def move_from(
        self, source: FaceIndex, model_id: str, *, tenant: str | None = None, batch_size: int = 64
    ) -> ReembedReport:
        """Move faces from `source`, another collection (another model profile, maybe of another dimension), into
        this repository's: each face's stored image embedded again by the ML service's model (`model_id`), written
        as a new revision here, then its row removed from `source`. Only `tenant`'s faces when given.

        A face the target already holds keeps its target revision (its source row is removed). A face that fails
        stays in `source`, so a second run retries it. The image of a moved face is written again under a new
        key; the old key is deleted once the new revision is stored.
        """
        report = ReembedReport()
        after: str | None = None
        while True:
            page = await source.scan_rows(after=after, limit=batch_size)
            if not page:
                return report
            after = page[-1].row_id
            for row in page:
                if tenant is not None and row.tenant != tenant:
                    continue
                try:
                    moved = await self._move(row, model_id)
                except AppError as exc:
                    if exc.status == 503:
                        raise
                    report.failed[f"{row.tenant}/{row.face_id}"] = exc.code
                    continue
                except MLImageRejected as exc:
                    report.failed[f"{row.tenant}/{row.face_id}"] = exc.code
                    continue
                except ObjectNotFound:
                    report.failed[f"{row.tenant}/{row.face_id}"] = "image_missing"
                    continue
                await source.remove(row.tenant, [row.row_id])
                if moved:
                    report.reembedded += 1
                else:
                    report.already_there += 1

    async def _move(self, row: FaceRecord, model_id: str) -> bool:
        """One source row into this repository; False when the face is there already."""
        if not row.object_key:
            raise AppError(409, "image_not_stored", "this face was stored without its image: enrol it again")
        image = await self.repository.image(row)
        analysis = await self.analyzer.analyze_stored(image, request_id=f"move-{uuid.uuid4().hex[:12]}")
        if analysis.embedding is None:
            raise AppError(422, "no_face_detected", f"the new model finds no face in {row.object_key}")
        if analysis.model_id != model_id:
            raise AppError(409, "model_changed", f"the ML service now embeds with {analysis.model_id}, not {model_id}")
        async with self.repository.editing(row.tenant, row.face_id) as face:
            if face.current is not None:
                return False
            await face.write(image, analysis.model_id, analysis.embedding, subject_id=row.subject_id)
        # If this fails the orphan sweep removes the old image later: the move itself is done.
        with contextlib.suppress(ObjectNotFound, StorageUnavailable):
            await self.repository.objects.delete(row.object_key)
        return True
