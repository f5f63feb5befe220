"""Forged keys against the key cache and the auth middleware, on the real local object store.

`CountingStore` wraps the real store only to count its reads (and, named so, to fail them on demand: the outage).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import asdict
from pathlib import Path

from faceauth.auth.cache import KeyCache
from faceauth.auth.keys import KEYS_PREFIX, ApiKey, KeyStore, _digest
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.local import LocalObjectStore
from tests.apitest import new_key


class CountingStore:
    """The real store, with its key reads counted; `outage = True` injects a store failure into every read."""

    def __init__(self, inner: LocalObjectStore) -> None:
        self.inner = inner
        self.key_reads = 0
        self.outage = False

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def get(self, key: str):
        if key.startswith(KEYS_PREFIX):
            self.key_reads += 1
        if self.outage:
            raise StorageUnavailable("objects", "injected outage")
        return await self.inner.get(key)


def forged_token(id_bytes: int = 16) -> str:
    """A well-formed key with a random id: 16 bytes (a signed id's length) or 8 (the ids of keys made before)."""
    return f"fa_{secrets.token_hex(id_bytes)}_{secrets.token_urlsafe(32)}"


def legacy_key(objects, tenant: str) -> tuple[ApiKey, str]:
    """A key as versions before signed ids made it (a bare 16-hex-digit id), written straight to the store."""
    key_id = secrets.token_hex(8)
    token = f"fa_{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(key_id, tenant, "old", 1, _digest(token))
    return key, token


def test_forged_ids_cost_no_store_read_and_valid_keys_stay_cached(make_api, tmp_path: Path):
    objects = CountingStore(LocalObjectStore(tmp_path / "images"))
    with make_api(objects=objects, auth_failures_burst=1000) as api:
        token = new_key(api, "acme")
        ok = {"X-Api-Key": token}
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers=ok).status_code == 200
        objects.key_reads = 0
        for i in range(100):
            forged = forged_token(16 if i % 2 else 8)
            r = api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": forged})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert objects.key_reads <= 3
        # The valid key was not pushed out: it still answers during an object-store outage.
        objects.outage = True
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers=ok).status_code == 200


def test_keys_made_before_signed_ids_keep_working_and_forged_old_style_ids_are_not_read(make_api, tmp_path: Path):
    objects = CountingStore(LocalObjectStore(tmp_path / "images"))
    asyncio.run(objects.inner.open())
    key, token = legacy_key(objects, "acme")
    asyncio.run(objects.inner.put(f"{KEYS_PREFIX}{key.key_id}", json.dumps(asdict(key)).encode(), "application/json"))
    with make_api(objects=objects, auth_failures_burst=1000) as api:
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": token}).status_code == 200
        objects.key_reads = 0
        for _ in range(50):
            old_style = f"fa_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
            assert (
                api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": old_style}).status_code == 401
            )
        assert objects.key_reads == 0


def test_failed_authentication_is_rate_limited_per_address_before_any_lookup(make_api, tmp_path: Path):
    objects = CountingStore(LocalObjectStore(tmp_path / "images"))
    with make_api(objects=objects, auth_failures_burst=5, auth_failures_per_second=0.01) as api:
        token = api.headers.pop("X-Api-Key")
        # No key at all: nothing to guess, nothing looked up, not counted.
        assert [api.get("/v1/subjects", params={"tenant": "acme"}).status_code for _ in range(8)] == [401] * 8
        statuses = [
            api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": forged_token()}).status_code
            for _ in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        r = api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": token})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_failed_authentications"
        assert int(r.headers["retry-after"]) >= 1 and r.json()["requestId"]


def test_concurrent_lookups_of_one_key_share_one_read_and_the_cache_is_bounded(tmp_path: Path):
    async def run() -> None:
        objects = CountingStore(LocalObjectStore(tmp_path / "images"))
        await objects.inner.open()
        keys = KeyStore(objects)
        made = [await keys.create("acme") for _ in range(5)]
        cache = KeyCache(keys, max_entries=3)
        objects.key_reads = 0
        found = await asyncio.gather(*(cache.get(made[0][0].key_id) for _ in range(50)))
        assert all(k == made[0][0] for k in found) and objects.key_reads == 1
        for key, _ in made[1:]:
            await cache.get(key.key_id)
        assert len(cache._entries) == 3  # least recently used dropped, never the whole cache at once
        assert list(cache._entries) == [k.key_id for k, _ in made[2:]]

    asyncio.run(run())
