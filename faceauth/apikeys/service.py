"""API keys over REST: the same key store `faceauth keys` works on."""

from __future__ import annotations

from faceauth.auth.cache import KeyCache
from faceauth.auth.keys import ApiKey, KeyStore
from faceauth.kit.errors import AppError


class KeyService:
    def __init__(self, keys: KeyStore, cache: KeyCache) -> None:
        self.keys = keys
        self.cache = cache

    async def create(self, tenant: str | None, name: str) -> tuple[ApiKey, str]:
        return await self.keys.create(tenant, name)

    async def list(self) -> list[ApiKey]:
        return await self.keys.list()

    async def revoke(self, key_id: str, *, caller_key_id: str | None) -> ApiKey:
        """Revoke a key (idempotent: a revoked key stays revoked). A key cannot revoke itself: the caller would be
        locked out mid-session, and the last admin key could be lost by a slip of the mouse."""
        if key_id == caller_key_id:
            raise AppError(409, "cannot_revoke_own_key", "this is the key making the request; use another admin key")
        key = await self.keys.revoke(key_id)
        self.cache.forget(key_id)
        if key is None:
            raise AppError(404, "key_not_found", f"no API key {key_id!r}")
        return key
