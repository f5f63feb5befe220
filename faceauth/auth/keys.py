"""API keys, stored hashed in the object store next to the images (so every API replica sees the same keys).

A key is ``fa_<key id>_<secret>``. Only a SHA-256 digest of it is stored: the secret is 32 random bytes, so a slow
password hash would add nothing, and the digest lets one lookup by key id plus one constant-time comparison
authenticate a request. Each key is bound to one tenant, or is an admin key (tenant ``None``).

A key id is 16 random hex digits followed by 16 hex digits of an HMAC of them under a server secret (kept in the
store, read once per process), so a forged id is refused without a store read (`KeyStore.vouches_for`). Keys made
before this (a bare 16-digit id) keep working: their ids are listed once when the store opens, and only those
listed are looked up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass

from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.objects import ObjectStore

# "_" never starts a tenant name, so no tenant's keys can collide with this prefix.
KEYS_PREFIX = "_keys/"
# The secret that signs key ids. Beside the keys: whoever can read it can also read (and write) the keys.
ID_SECRET_KEY = "_secrets/key-ids"
_TOKEN = re.compile(r"fa_([0-9a-f]{32}|[0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_LEGACY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str | None  # None: an admin key (every tenant, and tenant-wide operations)
    name: str
    created_at_ms: int
    digest: str  # sha256 of the whole token, hex
    revoked_at_ms: int | None = None

    @property
    def admin(self) -> bool:
        return self.tenant is None

    @property
    def active(self) -> bool:
        return self.revoked_at_ms is None

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(token))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> str | None:
    """The key id of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def _id_tag(secret: bytes, random_part: str) -> str:
    return hmac.new(secret, random_part.encode(), hashlib.sha256).hexdigest()[:16]


class KeyStore:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._secret: bytes | None = None
        self._legacy_ids: frozenset[str] | None = None

    async def open(self) -> None:
        """Read the id secret (made on first use) and the ids of keys made before ids were signed. Idempotent."""
        await self._id_secret()
        if self._legacy_ids is None:
            ids = (k.removeprefix(KEYS_PREFIX) for k in await self.objects.list(KEYS_PREFIX))
            self._legacy_ids = frozenset(i for i in ids if _LEGACY_ID.fullmatch(i))

    async def _id_secret(self) -> bytes:
        if self._secret is None:
            try:
                self._secret = (await self.objects.get(ID_SECRET_KEY)).data
            except ObjectNotFound:
                # First use. Two processes racing here both write; each then reads back what was stored, so the
                # last write wins for both (a key made by the loser in between would need re-creating).
                await self.objects.put(ID_SECRET_KEY, secrets.token_bytes(32), "application/octet-stream")
                self._secret = (await self.objects.get(ID_SECRET_KEY)).data
        return self._secret

    def vouches_for(self, key_id: str) -> bool:
        """Whether `key_id` can name a key, decided without a store read (after `open`): its signature checks, or
        it is one of the keys made before ids were signed."""
        if self._secret is None or self._legacy_ids is None:
            raise RuntimeError("KeyStore.open() first")
        if len(key_id) == 32:
            return hmac.compare_digest(key_id[16:], _id_tag(self._secret, key_id[:16]))
        return key_id in self._legacy_ids

    async def create(self, tenant: str | None, name: str = "") -> tuple[ApiKey, str]:
        """A new key and its token. The token is returned once and never stored."""
        random_part = secrets.token_hex(8)
        key_id = random_part + _id_tag(await self._id_secret(), random_part)
        token = f"fa_{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, tenant, name, int(time.time() * 1000), _digest(token))
        await self._save(key)
        return key, token

    async def get(self, key_id: str) -> ApiKey | None:
        try:
            stored = await self.objects.get(f"{KEYS_PREFIX}{key_id}")
        except ObjectNotFound:
            return None
        return ApiKey(**json.loads(stored.data))

    async def list(self) -> list[ApiKey]:
        keys = [await self.get(k.removeprefix(KEYS_PREFIX)) for k in await self.objects.list(KEYS_PREFIX)]
        return sorted((k for k in keys if k is not None), key=lambda k: k.created_at_ms)

    async def revoke(self, key_id: str) -> ApiKey | None:
        key = await self.get(key_id)
        if key is None or not key.active:
            return key
        revoked = ApiKey(**{**asdict(key), "revoked_at_ms": int(time.time() * 1000)})
        await self._save(revoked)
        return revoked

    async def any_active(self) -> bool:
        return any(k.active for k in await self.list())

    async def any_ever(self) -> bool:
        """Whether a key was ever made here, revoked or not."""
        return bool(await self.objects.list(KEYS_PREFIX))

    async def _save(self, key: ApiKey) -> None:
        await self.objects.put(f"{KEYS_PREFIX}{key.key_id}", json.dumps(asdict(key)).encode(), "application/json")
