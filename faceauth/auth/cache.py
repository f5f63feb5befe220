"""The API keys a process has looked up: a bounded LRU with one store read per key id at a time.

`KeyLookup` is what the auth middleware needs; `KeyCache` is this process's implementation (a shared one, say for
revocations seen across replicas at once, can take its place).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Protocol

from faceauth.auth.keys import ApiKey, KeyStore
from faceauth.storage.errors import StorageUnavailable

# How long a looked-up key is trusted before it is read again: a revocation takes effect within this time.
CACHE_SECONDS = 10.0
# How long an unknown (but correctly signed) key id is remembered.
MISS_SECONDS = 2.0
# When the object store is down, keys read before stay usable this long.
STALE_SECONDS = 600.0
MAX_CACHED = 10_000


class KeyLookup(Protocol):
    async def get(self, key_id: str) -> ApiKey | None:
        """The key, or None when there is none; raises StorageUnavailable when that cannot be known now."""


class KeyCache:
    def __init__(self, keys: KeyStore, *, max_entries: int = MAX_CACHED) -> None:
        self.keys = keys
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[ApiKey | None, float]] = OrderedDict()  # least recently used first
        self._reads: dict[str, asyncio.Task[ApiKey | None]] = {}

    async def get(self, key_id: str) -> ApiKey | None:
        await self.keys.open()  # a no-op once open
        # A forged id never reaches the store, nor the cache: it cannot push real keys out.
        if not self.keys.vouches_for(key_id):
            return None
        cached = self._entries.get(key_id)
        if cached is not None:
            key, at = cached
            if time.monotonic() - at < (CACHE_SECONDS if key is not None else MISS_SECONDS):
                self._entries.move_to_end(key_id)
                return key
        # Single flight: concurrent requests with the same key share one read.
        read = self._reads.get(key_id)
        if read is None:
            read = asyncio.create_task(self._read(key_id))
            self._reads[key_id] = read
            read.add_done_callback(lambda task: self._done(key_id, task))
        # shield: a cancelled request must not cancel the read the others wait for
        return await asyncio.shield(read)

    def _done(self, key_id: str, task: asyncio.Task) -> None:
        self._reads.pop(key_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a read nobody waits for any more is not logged as lost

    async def _read(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        try:
            key = await self.keys.get(key_id)
        except StorageUnavailable:
            cached = self._entries.get(key_id)
            if cached is not None and cached[0] is not None and now - cached[1] < STALE_SECONDS:
                return cached[0]
            raise
        self._entries[key_id] = (key, now)
        self._entries.move_to_end(key_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return key
