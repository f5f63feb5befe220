"""Which Face API replicas share this object store: each one records itself under `_replicas/` now and then.

Replicas on one set of stores must share a coordination server (FACEAUTH_COORDINATION_URL), or two of them can
both answer 200 to inserts of one id. A replica that finds another live one while it coordinates only with
itself logs an error each round and says so in /readyz, so the mistake shows up in the logs and the probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid

from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.objects import ObjectStore

log = logging.getLogger(__name__)

PRESENCE_PREFIX = "_replicas/"  # "_" starts no tenant name
# A record younger than this many intervals counts as a live replica.
_LIVE_INTERVALS = 3


class Presence:
    def __init__(self, objects: ObjectStore, *, interval_s: float, coordinated: bool) -> None:
        self.objects = objects
        self.interval_s = interval_s
        self.coordinated = coordinated
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.others: list[str] = []  # live replicas seen in the last round
        self._task: asyncio.Task[None] | None = None

    @property
    def warning(self) -> str | None:
        if self.others and not self.coordinated:
            return (
                f"{len(self.others)} other Face API replica(s) use this object store, and FACEAUTH_COORDINATION_URL "
                "is not set: concurrent writes of one face id on different replicas can both succeed. Point every "
                "replica at one Redis server (docs/SCALING.md)"
            )
        return None

    async def beat(self) -> list[str]:
        """Record this replica, and return the other live ones."""
        now_ms = int(time.time() * 1000)
        record = {"seen_at_ms": now_ms, "coordinated": self.coordinated, "pid": os.getpid()}
        await self.objects.put(f"{PRESENCE_PREFIX}{self.instance_id}", json.dumps(record).encode(), "application/json")
        others = []
        for key in await self.objects.list(PRESENCE_PREFIX):
            name = key.removeprefix(PRESENCE_PREFIX)
            if name == self.instance_id:
                continue
            try:
                seen = json.loads((await self.objects.get(key)).data)["seen_at_ms"]
            except (ObjectNotFound, ValueError, KeyError, TypeError):
                continue
            if now_ms - seen <= _LIVE_INTERVALS * self.interval_s * 1000:
                others.append(name)
            elif now_ms - seen > 100 * self.interval_s * 1000:  # long gone: tidy its record away
                with contextlib.suppress(StorageUnavailable):
                    await self.objects.delete(key)
        self.others = sorted(others)
        if self.warning:
            log.error("NOT ALONE: %s", self.warning)
        return self.others

    def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except StorageUnavailable as exc:
                log.warning("replica presence not recorded: %s", exc.detail)
            except Exception:
                log.exception("replica presence check failed")
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(StorageUnavailable):
            await self.objects.delete(f"{PRESENCE_PREFIX}{self.instance_id}")
