"""Liveness sessions in the object store, where the Face API keeps its shared state (API keys live there too), so
a session survives a restart and any replica can take its frames.

A session is one JSON object, ``_liveness/<tenant>/<session id>``. Changes (frames appended, the single-use claim)
are read-modify-write under the session's lock from the coordinator's `Locks`, the locks the face repository holds
for per-face writes (shared by every replica on Redis): whoever holds it reads the session fresh, so two
concurrent final submissions cannot both claim it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace

from faceauth.coordination import Locks
from faceauth.kit.errors import AppError
from faceauth.liveness.challenge import FrameFacts, Step
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.keys import LIVENESS_AREA, key_segment
from faceauth.storage.objects import ObjectStore

# "_" never starts a tenant name: no tenant's faces can collide with this prefix.
SESSIONS_PREFIX = LIVENESS_AREA


@dataclass(frozen=True)
class Session:
    session_id: str
    tenant: str
    challenge: list[Step]
    created_at_ms: int
    expires_at_ms: int
    subject_id: str | None = None
    reference_id: str | None = None
    used_at_ms: int | None = None  # set once, by the submission that was judged
    frames: list[FrameFacts] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Session:
        raw = json.loads(data)
        raw["frames"] = [FrameFacts(**{**f, "embedding": tuple(f["embedding"])}) for f in raw["frames"]]
        return cls(**raw)


def session_not_found(session_id: str) -> AppError:
    return AppError(404, "session_not_found", f"no liveness session {session_id!r} in this tenant")


def _key(tenant: str, session_id: str) -> str:
    return f"{SESSIONS_PREFIX}{key_segment(tenant)}/{session_id}"


class SessionRepository:
    def __init__(self, objects: ObjectStore, locks: Locks) -> None:
        self.objects = objects
        self.locks = locks

    async def create(self, session: Session) -> None:
        await self.objects.put(_key(session.tenant, session.session_id), session.to_json(), "application/json")

    async def get(self, tenant: str, session_id: str) -> Session:
        try:
            stored = await self.objects.get(_key(tenant, session_id))
        except ObjectNotFound:
            raise session_not_found(session_id) from None
        except ValueError:  # an id no key could hold
            raise session_not_found(session_id) from None
        return Session.from_json(stored.data)

    @asynccontextmanager
    async def changing(self, tenant: str, session_id: str) -> AsyncIterator[SessionChange]:
        """The session read fresh under its lock; what the block sets as `change.session` is written back."""
        async with self.locks.hold(("liveness", tenant, session_id)) as lease:
            change = SessionChange(await self.get(tenant, session_id))
            before = change.session
            yield change
            if change.session is not before:
                await lease.check()  # a claim made after the lease ran out could race another replica's
                await self.objects.put(_key(tenant, session_id), change.session.to_json(), "application/json")


@dataclass
class SessionChange:
    session: Session

    def append(self, frames: list[FrameFacts]) -> None:
        self.session = replace(self.session, frames=[*self.session.frames, *frames])

    def claim(self, now_ms: int) -> None:
        self.session = replace(self.session, used_at_ms=now_ms)


def new_session_id() -> str:
    return "ls_" + secrets.token_hex(16)
