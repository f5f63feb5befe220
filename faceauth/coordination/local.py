"""Coordination inside one process (the embedded default): asyncio locks (`kit.locks.KeyedLocks`); the rate limits
stay the auth layer's own token buckets (`auth.ratelimit.RateLimiter`), as before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

from faceauth.kit.locks import KeyedLocks


class _Held:
    """In one process nobody else can take the lock while it is held: the lease never runs out."""

    async def check(self) -> None:
        return None


_HELD = _Held()


class LocalLocks:
    def __init__(self) -> None:
        self._locks = KeyedLocks()

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[_Held]:
        async with self._locks.hold(key):
            yield _HELD


class LocalCoordinator:
    shared = False

    def __init__(self) -> None:
        self.locks = LocalLocks()

    def rate_limits(self, rate: float, burst: int) -> None:
        return None  # nothing shared: the caller keeps this process's own buckets

    async def open(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
