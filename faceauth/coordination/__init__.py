"""Coordination between Face API replicas: locks with leases and rate limits, in this process or on Redis.

`base` is the small protocol the rest of the Face API uses (`Coordinator`: `locks.hold(key)` and
`rate_limits(rate, burst).take(bucket)`); `local` keeps everything in this process (the embedded default, one
replica); `redis` shares it between every replica through one Redis server (FACEAUTH_COORDINATION_URL).
`open_coordinator` picks one from the settings.
"""

from __future__ import annotations

from faceauth.config import APISettings
from faceauth.coordination.base import CoordinationUnavailable, Coordinator, Lease, LeaseLost, Locks, RateLimits

__all__ = [
    "CoordinationUnavailable",
    "Coordinator",
    "Lease",
    "LeaseLost",
    "Locks",
    "RateLimits",
    "open_coordinator",
]


def open_coordinator(settings: APISettings) -> Coordinator:
    """The coordinator the settings name: Redis when FACEAUTH_COORDINATION_URL is set, else this process's own."""
    if settings.coordination_url:
        from faceauth.coordination.redis import RedisCoordinator

        return RedisCoordinator(
            settings.coordination_url,
            lease_s=settings.coordination_lease_seconds,
            wait_s=settings.coordination_wait_seconds,
            timeout_s=settings.coordination_timeout_seconds,
            prefix=settings.coordination_prefix,
        )
    from faceauth.coordination.local import LocalCoordinator

    return LocalCoordinator()
