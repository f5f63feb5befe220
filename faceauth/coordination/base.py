"""What the Face API asks of coordination: named locks that hold a lease, and token buckets.

A lock is held with `async with coordinator.locks.hold(key) as lease:`. In one process the lease never runs out.
On a shared server it runs out when its holder stops renewing it (the replica crashed or lost the server), so a
crashed replica never blocks a face for longer than one lease. A holder calls `await lease.check()` before it
writes and the lock checks again on leaving the block: a write whose lease ran out raises `LeaseLost` (a 503)
instead of being acknowledged, because another replica may by then hold the same lock.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from faceauth.kit.errors import RETRY_AFTER, AppError


class CoordinationUnavailable(AppError):
    """The coordination server could not be reached, or a lock could not be had in time: 503, retry."""

    def __init__(self, message: str, code: str = "coordination_unavailable") -> None:
        super().__init__(503, code, message, headers=dict(RETRY_AFTER))


class LeaseLost(CoordinationUnavailable):
    """A lock's lease ran out while it was held: what was done under it is not acknowledged."""

    def __init__(self) -> None:
        super().__init__(
            "the write's lock lease ran out before it was confirmed (coordination server slow or unreachable); "
            "read the face back, or retry",
            code="coordination_lease_lost",
        )


class Lease(Protocol):
    async def check(self) -> None:
        """Raise LeaseLost if the lock is no longer held by its holder (CoordinationUnavailable if unknown)."""


class Locks(Protocol):
    def hold(self, key: Hashable) -> AbstractAsyncContextManager[Lease]:
        """Hold `key` (a string or a tuple of strings / None) exclusively; the block gets the lock's lease."""


class RateLimits(Protocol):
    async def take(self, bucket: str) -> float:
        """Take one token from `bucket`: 0.0 if allowed, else the seconds until one is available."""


class Coordinator(Protocol):
    shared: bool  # True: every replica sees the same locks and buckets
    locks: Locks

    def rate_limits(self, rate: float, burst: int) -> RateLimits | None:
        """Token buckets shared by every replica, refilled at `rate` per second, holding at most `burst` tokens;
        None when nothing is shared (the caller keeps buckets of its own process)."""

    async def open(self) -> None:
        """Reach the server (CoordinationUnavailable if it cannot)."""

    async def ping(self) -> None:
        """CoordinationUnavailable unless the server answers now."""

    async def close(self) -> None: ...
