"""Purge marks: the fence between a tenant purge and the writes that were running when it began.

A purge writes a new mark for the tenant (``_purges/<tenant>/mark``, a random id) before it deletes anything. A face
write reads the tenant's mark before it writes and again after: if the mark changed, a purge began meanwhile and
may have missed what the write stored, so the write takes back its own rows and image and fails. Either the write's
second read sees the new mark, or the write was complete before the mark was written, and then the purge (which
deletes after writing the mark) removes it. This needs a store that reads its own writes (S3, the local folder).
"""

from __future__ import annotations

import json
import secrets
import time

from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.keys import tenant_prefix
from faceauth.storage.objects import ObjectStore

# "_" never starts a tenant name, so no tenant's faces can collide with this prefix.
PURGES_PREFIX = "_purges/"


def _mark_key(tenant: str) -> str:
    return f"{PURGES_PREFIX}{tenant_prefix(tenant)}mark"


class PurgeMarks:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def current(self, tenant: str) -> str | None:
        """The id of the tenant's last purge begun, or None if it was never purged."""
        try:
            stored = await self.objects.get(_mark_key(tenant))
        except ObjectNotFound:
            return None
        return str(json.loads(stored.data)["purge_id"])

    async def begin(self, tenant: str) -> str:
        """A new mark for the tenant (written before the purge deletes anything); its id."""
        purge_id = secrets.token_hex(8)
        body = json.dumps({"purge_id": purge_id, "started_at_ms": int(time.time() * 1000)}).encode()
        await self.objects.put(_mark_key(tenant), body, "application/json")
        return purge_id
