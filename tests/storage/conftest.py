"""Object stores for the storage tests: LocalObjectStore in a temporary folder, S3ObjectStore on a real S3
server (SeaweedFS `weed mini`, started once per session on 127.0.0.1 with credentials it checks).

The Milvus back-ends are in `milvus/conftest.py`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers.seaweed import WeedMiniServer
from faceauth.api.container import open_object_store
from faceauth.config import load_api_settings
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.local import LocalObjectStore
from faceauth.storage.objects import ObjectStore
from faceauth.storage.s3 import S3ObjectStore

BACKENDS = ("local", "s3")
# Every byte value, newlines included: the local store's file header must not be confused by the payload.
BINARY = bytes(range(256)) * 4


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def expect_unavailable(call: Callable[[], Coroutine[Any, Any, Any]], within_s: float) -> StorageUnavailable:
    """`call()` raises StorageUnavailable (nothing else) within `within_s` seconds; returns it."""
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        run(call())
    elapsed = time.monotonic() - started
    assert elapsed < within_s, f"took {elapsed:.1f} s to fail"
    assert info.value.store == "objects"
    return info.value


def expect_each_call_named(store: ObjectStore) -> None:
    """Each call of a failing `store` raises StorageUnavailable naming that call (its metrics name)."""
    calls = {
        "ping": store.ping,
        "put": lambda: store.put("t1/f/r", b"x", "image/jpeg"),
        "get": lambda: store.get("t1/f/r"),
        "list": lambda: store.list("t1/"),
        "delete": lambda: store.delete("t1/f/r"),
    }
    for operation, call in calls.items():
        assert expect_unavailable(call, within_s=5).operation == operation


def new_bucket() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ObjectStore]]:
    """make_store() -> an unopened store from settings (the factory the Face API uses): a fresh folder or bucket."""
    made: list[ObjectStore] = []

    def make() -> ObjectStore:
        if backend == "local":
            settings = load_api_settings(object_store="local", local_store_dir=tmp_path / f"objects-{len(made)}")
        else:
            server: WeedMiniServer = request.getfixturevalue("weed")
            settings = load_api_settings(
                object_store="s3",
                minio_endpoint=server.endpoint,
                minio_access_key=server.access_key,
                minio_secret_key=server.secret_key,
                minio_bucket=new_bucket(),
                minio_timeout_seconds=10,
            )
        store = open_object_store(settings)
        made.append(store)
        return store

    yield make

    async def close_all() -> None:
        for store in made:
            await store.close()

    run(close_all())


@pytest.fixture
def store(make_store: Callable[[], ObjectStore]) -> ObjectStore:
    """An opened store on a fresh folder or bucket."""
    s = make_store()
    run(s.open())
    return s


def stored_names(store: ObjectStore, request: pytest.FixtureRequest) -> list[str]:
    """The names the back-end itself holds: file paths under the root, or object names in the bucket."""
    if isinstance(store, LocalObjectStore):
        return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3ObjectStore)
    client = request.getfixturevalue("weed").client()
    return sorted(o.object_name for o in client.list_objects(store.bucket, recursive=True))
