"""Whole-tenant operations: the purge (right to erasure) removes every vector and every image of a tenant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from faceauth.kit.errors import unavailable
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.keys import tenant_prefix
from faceauth.storage.objects import ObjectStore
from faceauth.storage.vectors import FaceIndex

# Image deletions in flight at once during a purge.
_DELETE_CONCURRENCY = 16


@dataclass(frozen=True)
class PurgeReport:
    vectors: int  # vector rows removed
    images: int  # image objects removed
    faces: int  # distinct face ids those images belonged to


class TenantService:
    def __init__(self, index: FaceIndex, objects: ObjectStore) -> None:
        self.index = index
        self.objects = objects

    async def purge(self, tenant: str) -> PurgeReport:
        """Vectors first (nothing of the tenant matches any more), then the images. Idempotent: a purge that
        failed half-way is finished by running it again, and purging an empty tenant reports zeros."""
        vectors = await self.index.purge_tenant(tenant)
        try:
            keys = await self.objects.list(tenant_prefix(tenant))
            gate = asyncio.Semaphore(_DELETE_CONCURRENCY)

            async def delete(key: str) -> None:
                async with gate:
                    await self.objects.delete(key)

            await asyncio.gather(*(delete(k) for k in keys))
        except StorageUnavailable as exc:
            raise unavailable(
                "object_store_unavailable",
                f"the tenant no longer matches anything, but its images could not all be removed ({exc.detail}): "
                "retry the purge to finish",
            ) from None
        faces = {key.split("/")[1] for key in keys if key.count("/") >= 2}
        return PurgeReport(vectors=vectors, images=len(keys), faces=len(faces))
