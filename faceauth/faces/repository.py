"""Faces in the two stores: a face is in both (its vector in Milvus, its image in the object store) or in neither.

Each revision of a face has its own image key (``tenant/face_id/<revision>``) and its own vector row, so a write
never overwrites anything that a reader, or a rollback, still needs:

- a new revision: image first, then the vector; if the vector fails, the new image is removed again. The
  revisions it replaces are removed only after it is complete in both stores.
- delete: the vector first (the face stops matching at once), then the images; a retry finishes the job.
- every write first tidies what an earlier crash may have left under the face's prefix (images no vector
  points to, older duplicate rows), so one face never drifts.

Writes to the same (tenant, face_id) are serialised by the coordinator's locks (`editing`), which also makes
"insert answers 409 if the id exists" exact: in this process by default, across every replica when they share a
coordination server (FACEAUTH_COORDINATION_URL). There a lock has a lease: each write checks it just before it
writes, and again before it is acknowledged, so a write whose lease ran out answers 503 instead of "done".
Replicas that share the stores but no coordination server can still race (Milvus has no conditional insert); the
tidy-up above keeps even that case consistent (newest revision wins).

A store that fails raises StorageUnavailable (the app answers 503); a write that is only partly done when a
store fails, and that a retry finishes, says so in its own 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import numpy as np

from faceauth.coordination import Lease, Locks
from faceauth.coordination.local import LocalLocks
from faceauth.kit.errors import AppError, unavailable
from faceauth.kit.imagetypes import sniff_content_type
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.keys import face_prefix, revision_key, revision_ms
from faceauth.storage.objects import ObjectStore
from faceauth.storage.records import FaceRecord
from faceauth.storage.vectors import FaceIndex

log = logging.getLogger(__name__)

# An image no vector points to is a leftover only once it is older than any request that may still be
# completing it (another replica between its two writes); younger ones are left alone.
ORPHAN_GRACE_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class RepairCounts:
    """What `FaceRepository.repair` removed."""

    rows_without_image: int = 0  # vector rows whose image was missing
    replaced_rows: int = 0  # complete revisions older than the face's newest one
    orphan_images: int = 0  # images no vector row pointed to (then or once the replaced rows were gone)


def face_not_found(tenant: str, face_id: str) -> AppError:
    return AppError(404, "face_not_found", f"no face {face_id!r} in tenant {tenant!r}")


class FaceEdit:
    """A face held for writing: its lock is held and what earlier writes left behind is tidied away."""

    def __init__(
        self, repository: FaceRepository, tenant: str, face_id: str, current: FaceRecord | None, leases: list[Lease]
    ) -> None:
        self._repository = repository
        self._leases = leases
        self.tenant = tenant
        self.face_id = face_id
        self.current = current  # the face's revision now (None: not stored)

    async def write(self, image: bytes, model_id: str, embedding: np.ndarray, *, subject_id: str) -> FaceRecord:
        """A new revision in both stores, then the one it replaces removed (only while the locks are still held)."""
        for lease in self._leases:
            await lease.check()
        record = await self._repository._write_revision(
            self.tenant, self.face_id, image, model_id, embedding, subject_id, replacing=self.current
        )
        self.current = record
        return record

    async def move(self, subject_id: str) -> FaceRecord:
        """A new revision of the face under another subject: the same image and vector, both stores, then the
        revision it replaces removed (as any write). The face must exist."""
        if self.current is None:
            raise face_not_found(self.tenant, self.face_id)
        record = await self._repository._move_revision(self.current, subject_id)
        self.current = record
        return record


class FaceRepository:
    def __init__(
        self,
        index: FaceIndex,
        objects: ObjectStore,
        *,
        store_images: bool = True,
        locks: Locks | None = None,
        shared_locks: bool = False,
    ) -> None:
        """`store_images=False` (FACEAUTH_STORE_IMAGES): rows without an image, on purpose (empty object key).
        `locks`: the coordinator's (shared by replicas); this process's own by default. `shared_locks`: every
        replica writes under these locks, so an image no row points to is never a write in progress elsewhere
        (whoever wrote it lost its lock, and its write is not acknowledged): it goes at once, without the grace."""
        self.index = index
        self.objects = objects
        self.store_images = store_images
        self._locks: Locks = locks or LocalLocks()
        self._shared_locks = shared_locks

    # -- writes ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def editing(self, tenant: str, face_id: str, *, tenant_lock: bool = False) -> AsyncIterator[FaceEdit]:
        """Hold the face for writing. `tenant_lock` also holds the tenant-wide lock first, for writes that must
        see each other's (two enrolments with a duplicate check may not both miss each other). Lock order: the
        tenant's, then the face's; nothing takes them the other way round."""
        async with AsyncExitStack() as held:
            leases = []
            if tenant_lock:
                leases.append(await held.enter_async_context(self._locks.hold((tenant, None))))
            leases.append(await held.enter_async_context(self._locks.hold((tenant, face_id))))
            current = await self._tidy(tenant, face_id)
            yield FaceEdit(self, tenant, face_id, current, leases)

    async def delete(self, tenant: str, face_id: str) -> None:
        async with self._locks.hold((tenant, face_id)) as lease:
            rows = await self.index.find(tenant, face_id)
            keys = await self.objects.list(face_prefix(tenant, face_id))
            if not rows and not keys:
                raise face_not_found(tenant, face_id)
            await lease.check()
            if rows:
                await self.index.remove(tenant, [r.row_id for r in rows])
            try:
                for key in keys:
                    await self.objects.delete(key)
            except StorageUnavailable:
                raise unavailable(
                    "object_store_unavailable",
                    "the face no longer matches, but its image could not be removed yet: retry the delete to finish",
                ) from None

    async def repair(self, tenant: str, face_id: str) -> RepairCounts:
        """Remove what interrupted writes left of one face, as every write of it does first (`_tidy`), under the
        face's lock so no write of this process is half-way meanwhile; for the orphan sweep."""
        prefix = face_prefix(tenant, face_id)
        async with self._locks.hold((tenant, face_id)):
            rows = await self.index.find(tenant, face_id)
            keys = set(await self.objects.list(prefix))
            current = await self._tidy(tenant, face_id)
            # _tidy only logs an image it could not delete: count what is really gone.
            left = set(await self.objects.list(prefix))
        gone = [r for r in rows if r != current]
        missing = sum(bool(r.object_key) and r.object_key not in keys for r in gone)  # "": stored without image
        return RepairCounts(
            rows_without_image=missing, replaced_rows=len(gone) - missing, orphan_images=len(keys - left)
        )

    # -- reads ----------------------------------------------------------------------------------------------

    async def get(self, tenant: str, face_id: str) -> FaceRecord:
        """The face's current revision; 404 when there is none."""
        rows = await self.index.find(tenant, face_id)
        if not rows:
            raise face_not_found(tenant, face_id)
        return rows[0]

    async def image(self, record: FaceRecord) -> bytes:
        """The stored image of a revision (ObjectNotFound when it is gone)."""
        return (await self.objects.get(record.object_key)).data

    # -- internals ------------------------------------------------------------------------------------------

    async def _write_revision(
        self,
        tenant: str,
        face_id: str,
        image: bytes,
        model_id: str,
        embedding: np.ndarray,
        subject_id: str,
        *,
        replacing: FaceRecord | None,
    ) -> FaceRecord:
        now_ms = int(time.time() * 1000)
        key = revision_key(tenant, face_id, now_ms)
        record = FaceRecord(
            row_id=key,
            tenant=tenant,
            face_id=face_id,
            object_key=key if self.store_images else "",
            model_id=model_id,
            created_at_ms=now_ms,
            subject_id=subject_id,
        )
        await self._write_both(record, image, embedding)
        if replacing is not None:
            await self._drop_replaced(tenant, replacing, rollback=record)
        return record

    async def _move_revision(self, current: FaceRecord, subject_id: str) -> FaceRecord:
        stored = await self.index.vectors(
            current.tenant, model_id=current.model_id, face_id=current.face_id, max_rows=16
        )
        embedding = next(
            (v for r, v in zip(stored.records, stored.embeddings, strict=True) if r.row_id == current.row_id), None
        )
        if embedding is None:  # removed between the read of the face and now
            raise face_not_found(current.tenant, current.face_id)
        image = await self.image(current) if current.object_key else b""
        now_ms = max(int(time.time() * 1000), current.created_at_ms + 1)  # newer than the revision it replaces
        key = revision_key(current.tenant, current.face_id, now_ms)
        record = FaceRecord(
            row_id=key,
            tenant=current.tenant,
            face_id=current.face_id,
            object_key=key if current.object_key else "",  # a face stored without its image stays without
            model_id=current.model_id,
            created_at_ms=now_ms,
            subject_id=subject_id,
        )
        await self._write_both(record, image, embedding)
        await self._drop_replaced(current.tenant, current, rollback=record)
        return record

    async def _write_both(self, record: FaceRecord, image: bytes, embedding: np.ndarray) -> None:
        """The image, then the vector. A record without object key keeps no image (FACEAUTH_STORE_IMAGES=false)."""
        if record.object_key:
            try:
                await self.objects.put(record.object_key, image, sniff_content_type(image))
            except StorageUnavailable:
                # A put that timed out may still have landed: make sure no image stays without its vector.
                await self._forget_image(record.object_key)
                raise
        try:
            await self.index.add(record, embedding)
        except BaseException:
            # An insert that timed out may still be applied: take the row back before the image, so neither
            # stays alone. If Milvus is down for both, the row without image is removed by the next write.
            await self._forget_row(record)
            await self._forget_image(record.object_key)
            raise

    async def _drop_replaced(self, tenant: str, old: FaceRecord, rollback: FaceRecord) -> None:
        """After a replacement: remove the replaced revision; if its vector cannot go, undo the new one."""
        try:
            await self.index.remove(tenant, [old.row_id])
        except StorageUnavailable:
            try:
                await self.index.remove(tenant, [rollback.row_id])
            except StorageUnavailable:
                # Two complete revisions remain; the next write to this face keeps the newest (see _tidy).
                log.error("upsert of %s/%s: could not roll back the new revision", tenant, rollback.face_id)
                raise
            await self._forget_image(rollback.object_key)
            raise
        try:
            if old.object_key:
                await self.objects.delete(old.object_key)
        except StorageUnavailable:
            # The face is consistent (new vector, new image); the old image is a leftover no vector points to.
            raise unavailable(
                "object_store_unavailable",
                "the face was replaced, but its previous image could not be removed yet: retry to finish",
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

    async def _tidy(self, tenant: str, face_id: str) -> FaceRecord | None:
        """The face's current revision, after removing what an interrupted write left behind: vector rows whose
        image is missing, older duplicate revisions, and images no vector points to."""
        rows = await self.index.find(tenant, face_id)
        keys = set(await self.objects.list(face_prefix(tenant, face_id)))
        # A row without object key was stored without its image on purpose (FACEAUTH_STORE_IMAGES=false).
        complete = [r for r in rows if not r.object_key or r.object_key in keys]  # newest first
        doomed = [r for r in rows if r.object_key and r.object_key not in keys] + complete[1:]
        if doomed:
            log.warning("%s/%s: removing %d incomplete or replaced revision(s)", tenant, face_id, len(doomed))
            await self.index.remove(tenant, [r.row_id for r in doomed])
        current = complete[0] if complete else None
        referenced = {current.object_key} if current else set()
        newest_ms = current.created_at_ms if current else None
        now_ms = int(time.time() * 1000)
        grace_ms = 0 if self._shared_locks else ORPHAN_GRACE_MS
        for key in sorted(keys - referenced):
            born = revision_ms(key)
            # Older than the live revision: a leftover for sure. Newer: maybe another (uncoordinated) replica's
            # write in progress, so only once it is older than any request could be.
            if born is None or (newest_ms is not None and born < newest_ms) or now_ms - born > grace_ms:
                await self._forget_image(key)
        return current
