"""`Idempotency-Key` on verify, search and liveness: a retry with the same key within 24 h gets the first answer
again, without the decision being made (counted, logged, recorded in a replay window, spending a session) twice.

Answers are kept in the object store (`_idempotency/<tenant>/<digest of route and key>`), so a retry that lands on
another replica finds them too. Only successful (200) answers are kept: a request that failed may be retried and
succeed. While the first request with a key is being answered, a retry with the same key waits for it (the keyed
lock, shared by every replica when coordination runs on Redis).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from faceauth.coordination import Locks
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.keys import IDEMPOTENCY_AREA, key_segment
from faceauth.storage.objects import ObjectStore
from faceauth.web.deps import provided

PREFIX = IDEMPOTENCY_AREA
TTL_SECONDS = 24 * 3600
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="a retry with the same key within 24 h gets the first answer again, decided once",
    ),
]


class IdempotentAnswers:
    def __init__(self, objects: ObjectStore, locks: Locks) -> None:
        self.objects = objects
        self.locks = locks

    async def answer(
        self, key: str | None, route: str, tenant: str | None, compute: Callable[[], Awaitable[BaseModel]]
    ) -> BaseModel | JSONResponse:
        if key is None:
            return await compute()
        digest = hashlib.sha256(f"{route}\n{key}".encode()).hexdigest()[:40]
        stored_key = f"{PREFIX}{key_segment(tenant) if tenant else '_admin'}/{digest}"
        async with self.locks.hold(("idempotency", stored_key)):
            kept = await self._read(stored_key)
            if kept is not None:
                return JSONResponse(kept, headers={REPLAYED_HEADER: "true"})
            answer = await compute()
            body = {"at": time.time(), "answer": json.loads(answer.model_dump_json())}
            await self.objects.put(stored_key, json.dumps(body).encode(), "application/json")
            return answer

    async def _read(self, key: str) -> dict | None:
        try:
            raw = json.loads((await self.objects.get(key)).data)
        except ObjectNotFound:
            return None
        if time.time() - raw["at"] > TTL_SECONDS:
            return None
        return raw["answer"]


IdempotentAnswersDep = Annotated[IdempotentAnswers, Depends(provided(IdempotentAnswers))]
