"""Whole-tenant operations: the purge (right to erasure) removes every vector, every image, every photo waiting in
the drop area and (unless told otherwise) every API key of a tenant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from faceauth.auth.keys import KeyStore
from faceauth.kit.errors import unavailable
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.keys import TENANT_AREAS, tenant_prefix
from faceauth.storage.objects import ObjectStore
from faceauth.storage.purges import PurgeMarks
from faceauth.storage.vectors import FaceIndex

# Image deletions in flight at once during a purge.
_DELETE_CONCURRENCY = 16


# Rows read at most to count faces per tenant: counting is a scan of the index, fine for a console's overview of
# up to this many rows; beyond it the counts say they are partial.
COUNT_MAX_ROWS = 200_000


@dataclass(frozen=True)
class TenantCount:
    tenant: str
    faces: int  # distinct face ids
    subjects: int  # distinct subject ids


@dataclass(frozen=True)
class TenantCounts:
    tenants: list[TenantCount]
    complete: bool  # False: more than COUNT_MAX_ROWS rows, the counts are of the first ones only


@dataclass(frozen=True)
class PurgeReport:
    vectors: int  # vector rows removed
    images: int  # image objects removed
    faces: int  # distinct face ids those images belonged to
    uploads: int  # photos removed from the drop area (_uploads/<tenant>/)
    keys_revoked: int  # the tenant's API keys revoked by this purge


class TenantService:
    def __init__(self, index: FaceIndex, objects: ObjectStore, keys: KeyStore, *, drop_prefix: str) -> None:
        self.index = index
        self.objects = objects
        self.keys = keys
        self.drop_prefix = drop_prefix  # FACEAUTH_IMAGE_URL_S3_PREFIX: photos given as s3:// URLs wait there
        self.marks = PurgeMarks(objects)

    async def counts(self, tenant: str | None, *, max_rows: int = COUNT_MAX_ROWS) -> TenantCounts:
        """Faces and subjects of every tenant (`tenant` None) or of one, from a scan of the index's rows."""
        faces: dict[str, set[str]] = {}
        subjects: dict[str, set[str]] = {}
        after, seen = None, 0
        while seen < max_rows:
            rows = await self.index.scan_rows(after=after, limit=min(1000, max_rows - seen))
            if not rows:
                break
            seen += len(rows)
            after = rows[-1].row_id
            for row in rows:
                if tenant is None or row.tenant == tenant:
                    faces.setdefault(row.tenant, set()).add(row.face_id)
                    subjects.setdefault(row.tenant, set()).add(row.subject_id)
        else:
            complete = not await self.index.scan_rows(after=after, limit=1)
            return TenantCounts(_counted(faces, subjects, tenant), complete)
        return TenantCounts(_counted(faces, subjects, tenant), True)

    async def purge(self, tenant: str, *, keep_keys: bool = False) -> PurgeReport:
        """In this order: the tenant's keys revoked (so no new request of the tenant starts), a purge mark (writes
        still running see it and take themselves back, see storage/purges.py), the vectors (nothing of the tenant
        matches any more), then the images and the drop area. Idempotent: a purge that failed half-way is finished
        by running it again, and purging an empty tenant reports zeros."""
        revoked = 0
        if not keep_keys:
            for key in await self.keys.list():
                if key.tenant == tenant and key.active:
                    await self.keys.revoke(key.key_id)
                    revoked += 1
        await self.marks.begin(tenant)
        vectors = await self.index.purge_tenant(tenant)
        try:
            keys = await self._delete_under(tenant_prefix(tenant))
            uploads = await self._delete_under(f"{self.drop_prefix}{tenant_prefix(tenant)}")
            for area in TENANT_AREAS:  # liveness sessions, replay windows, stored idempotent answers
                await self._delete_under(f"{area}{tenant_prefix(tenant)}")
        except StorageUnavailable as exc:
            raise unavailable(
                "object_store_unavailable",
                f"the tenant no longer matches anything, but its images could not all be removed ({exc.detail}): "
                "retry the purge to finish",
            ) from None
        faces = {key.split("/")[1] for key in keys if key.count("/") >= 2}
        return PurgeReport(
            vectors=vectors, images=len(keys), faces=len(faces), uploads=len(uploads), keys_revoked=revoked
        )

    async def _delete_under(self, prefix: str) -> list[str]:
        keys = await self.objects.list(prefix)
        gate = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def delete(key: str) -> None:
            async with gate:
                await self.objects.delete(key)

        await asyncio.gather(*(delete(k) for k in keys))
        return keys


def _counted(faces: dict[str, set[str]], subjects: dict[str, set[str]], tenant: str | None) -> list[TenantCount]:
    names = sorted(faces) if tenant is None else [tenant]  # a tenant key sees its own tenant, even when empty
    return [TenantCount(t, len(faces.get(t, ())), len(subjects.get(t, ()))) for t in names]
