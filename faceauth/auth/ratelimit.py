"""Token buckets, one per API key: `rate` requests per second on average, bursts of up to `burst`."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

# Buckets kept at most (least recently used dropped first; a dropped bucket comes back full, which is harmless).
_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._lock = threading.Lock()

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


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
