"""Token buckets, one per API key: `rate` requests per second on average, bursts of up to `burst`; and the same
for failed authentications per client address (`FailedAuthLimiter`, so a shared backend can take its place)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Protocol

# Buckets kept at most (least recently used dropped first; a dropped bucket comes back full, which is harmless).
_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """The seconds until `key` has a token (0.0: it has one now), taking none."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str, now: float | None = None) -> float:
        """Take one token for `key`: 0.0 if allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return wait

    async def take(self, key: str) -> float:
        """`acquire` as the coordination protocol's `RateLimits` asks for it (a shared limiter is remote)."""
        return self.acquire(key)


class FailedAuthLimiter(Protocol):
    def blocked(self, client: str) -> float:
        """0.0 if `client` may try a key now, else the seconds until it may."""

    def failed(self, client: str) -> None:
        """Count one failed authentication against `client`."""


class FailureLimiter:
    """Failed authentications per client address: `burst` at once, then `rate` a second; successes cost nothing."""

    def __init__(self, rate: float, burst: int) -> None:
        self._buckets = RateLimiter(rate, burst)

    def blocked(self, client: str) -> float:
        return self._buckets.wait(client)

    def failed(self, client: str) -> None:
        self._buckets.acquire(client)


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
