"""Coordination shared by every Face API replica through one Redis server (FACEAUTH_COORDINATION_URL).

- Locks: redis-py's `Lock` (SET NX PX with a random token, released and renewed by Lua scripts that compare the
  token), held with a lease of `lease_s` seconds that a background task renews every third of it. A replica that
  dies stops renewing, so its locks free themselves after one lease. The lease is trusted locally only until
  `lease_s` minus a safety margin after its last successful renewal (the server's clock may run ahead of ours),
  and `check()` asks the server too, so a write is acknowledged only while its lock is provably still its own.
- Rate limits: a token bucket per key in one Lua script (atomic, on the server's clock), shared by all replicas.

Redis down: every lock and every rate-limited request answers 503 `coordination_unavailable`; nothing is written
without its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from faceauth.coordination.base import CoordinationUnavailable, LeaseLost

log = logging.getLogger(__name__)

# The part of a lease not relied on: clock drift between replica and server, and the time a check takes.
_SAFETY = 0.2

# KEYS[1]: the bucket; ARGV: rate per second, burst. Returns the seconds to wait (as text), "0" when allowed.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


def _unavailable(exc: BaseException) -> CoordinationUnavailable:
    log.error("coordination server: %s", exc)
    return CoordinationUnavailable("the coordination server is unavailable; retry the request")


class RedisLease:
    """One held lock, renewed in the background until released."""

    def __init__(self, lock: Lock, lease_s: float) -> None:
        self._lock = lock
        self._lease_s = lease_s
        self._valid_until = time.monotonic() + lease_s * (1 - _SAFETY)
        self._lost = False
        self._renewer: asyncio.Task[None] | None = None

    def start_renewing(self) -> None:
        self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while not self._lost:
            await asyncio.sleep(self._lease_s / 3)
            started = time.monotonic()
            try:
                await self._lock.reacquire()
                self._valid_until = started + self._lease_s * (1 - _SAFETY)
            except LockNotOwnedError:
                self._lost = True
                log.error("lock %s: the lease ran out before it was renewed", self._lock.name)
            except (RedisError, OSError) as exc:  # try again next round; check() fails once the lease is over
                log.warning("lock %s: renewal failed (%s)", self._lock.name, exc)

    async def check(self) -> None:
        if self._lost or time.monotonic() >= self._valid_until:
            raise LeaseLost()
        try:
            owned = await self._lock.owned()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        if not owned or time.monotonic() >= self._valid_until:
            self._lost = True
            raise LeaseLost()

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        try:
            await self._lock.release()
        except LockError:  # ran out already (LockNotOwnedError) or never held: nothing to release
            pass
        except (RedisError, OSError) as exc:  # it expires by itself within one lease
            log.warning("lock %s: release failed (%s); it expires within %.0f s", self._lock.name, exc, self._lease_s)


class RedisLocks:
    def __init__(self, client: Redis, prefix: str, lease_s: float, wait_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_s = lease_s
        self._wait_s = wait_s

    def name(self, key: Hashable) -> str:
        parts = list(key) if isinstance(key, tuple) else [key]
        return f"{self._prefix}lock:{json.dumps(parts, separators=(',', ':'))}"

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[RedisLease]:
        lock = Lock(
            self._client,
            self.name(key),
            timeout=self._lease_s,
            sleep=0.02,
            blocking_timeout=self._wait_s,
            thread_local=False,
        )
        try:
            acquired = await lock.acquire()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        if not acquired:
            raise CoordinationUnavailable(
                f"this face is being changed by another request for over {self._wait_s:.0f} s; retry",
                code="lock_timeout",
            )
        lease = RedisLease(lock, self._lease_s)
        lease.start_renewing()
        try:
            yield lease
            await lease.check()  # the block's work counts only if the lock was still ours at its end
        finally:
            await lease.release()


class RedisRateLimits:
    def __init__(self, client: Redis, prefix: str, rate: float, burst: int) -> None:
        self._script = client.register_script(_TOKEN_BUCKET)
        self._prefix = prefix
        self.rate = rate
        self.burst = burst

    async def take(self, bucket: str) -> float:
        try:
            wait = await self._script(keys=[f"{self._prefix}rate:{bucket}"], args=[self.rate, self.burst])
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return float(wait)


class RedisCoordinator:
    shared = True

    def __init__(self, url: str, *, lease_s: float, wait_s: float, timeout_s: float, prefix: str) -> None:
        # No retries inside the client: a down server must answer 503 in about `timeout_s`, not hang requests.
        self.client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry_on_timeout=False,
            retry=None,
            health_check_interval=30,
        )
        self.prefix = prefix
        self.locks = RedisLocks(self.client, prefix, lease_s, wait_s)

    def rate_limits(self, rate: float, burst: int) -> RedisRateLimits:
        return RedisRateLimits(self.client, self.prefix, rate, burst)

    async def open(self) -> None:
        await self.ping()

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self.client.aclose()
