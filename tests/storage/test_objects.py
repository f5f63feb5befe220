"""Both object stores against one contract (the `store` fixture runs each test on both back-ends)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.servers.seaweed import WeedMiniServer
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.local import LocalObjectStore
from faceauth.storage.objects import ObjectStore, StoredObject
from faceauth.storage.s3 import S3ObjectStore
from tests.storage.conftest import BINARY, new_bucket, run, stored_names


def test_put_then_get_returns_the_same_bytes_and_content_type(store: ObjectStore) -> None:
    async def body() -> None:
        await store.put("t1/face-1/0001", BINARY, "image/jpeg")
        await store.put("t1/face-2/0001", b"\x89PNG\r\n\x1a\n...", "image/png")
        await store.put("t1/face-3/0001", b"", "application/octet-stream")
        await store.put("t1/face-4/0001", b"<svg/>", "image/svg+xml; charset=utf-8")
        assert await store.get("t1/face-1/0001") == StoredObject(BINARY, "image/jpeg")
        assert await store.get("t1/face-2/0001") == StoredObject(b"\x89PNG\r\n\x1a\n...", "image/png")
        assert await store.get("t1/face-3/0001") == StoredObject(b"", "application/octet-stream")
        assert await store.get("t1/face-4/0001") == StoredObject(b"<svg/>", "image/svg+xml; charset=utf-8")

    run(body())


def test_put_overwrites_bytes_and_content_type(store: ObjectStore) -> None:
    async def body() -> None:
        await store.put("t1/f/r", b"first version, longer than the second", "image/jpeg")
        await store.put("t1/f/r", b"second", "image/webp")
        assert await store.get("t1/f/r") == StoredObject(b"second", "image/webp")
        assert await store.list("t1/") == ["t1/f/r"]

    run(body())


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    async def body() -> None:
        await store.put("t1/f/r1", b"x", "image/jpeg")
        for missing in ("t1/f/r2", "t1/f", "t1/f/r1/deeper", "t9/f/r1"):
            with pytest.raises(ObjectNotFound):
                await store.get(missing)

    run(body())


def test_delete_is_idempotent(store: ObjectStore) -> None:
    async def body() -> None:
        await store.put("t1/f/r1", b"one", "image/jpeg")
        await store.put("t1/f/r2", b"two", "image/jpeg")
        await store.delete("t1/f/r1")
        await store.delete("t1/f/r1")  # again
        await store.delete("t1/never/was")
        with pytest.raises(ObjectNotFound):
            await store.get("t1/f/r1")
        assert await store.get("t1/f/r2") == StoredObject(b"two", "image/jpeg")
        assert await store.list("") == ["t1/f/r2"]

    run(body())


def test_list_returns_exactly_the_keys_under_the_prefix_sorted(
    store: ObjectStore, request: pytest.FixtureRequest
) -> None:
    keys = ["t1/a/2", "t1/a/1", "t1/ab/x", "t1/b/1", "t2/a/1", "t1/a/sub/3"]

    async def body() -> None:
        for key in keys:
            await store.put(key, key.encode(), "text/plain")
        assert await store.list("t1/a/") == ["t1/a/1", "t1/a/2", "t1/a/sub/3"]
        # A prefix is a string prefix, as in S3: "t1/a" also covers "t1/ab/...".
        assert await store.list("t1/a") == ["t1/a/1", "t1/a/2", "t1/a/sub/3", "t1/ab/x"]
        assert await store.list("t1/a/1") == ["t1/a/1"]
        assert await store.list("t1/") == sorted(k for k in keys if k.startswith("t1/"))
        assert await store.list("") == sorted(keys)
        assert await store.list("t3/") == []
        assert await store.list("t1/zzz/") == []

    run(body())
    assert stored_names(store, request) == sorted(keys)  # ordinary keys are stored under their own names


def test_tenants_do_not_see_each_other(store: ObjectStore) -> None:
    async def body() -> None:
        await store.put("acme/alice/r1", b"acme's alice", "image/jpeg")
        await store.put("globex/alice/r1", b"globex's alice", "image/png")
        assert await store.list("acme/") == ["acme/alice/r1"]
        assert await store.list("globex/") == ["globex/alice/r1"]
        await store.delete("acme/alice/r1")
        assert await store.get("globex/alice/r1") == StoredObject(b"globex's alice", "image/png")
        assert await store.list("acme/") == []

    run(body())


def test_segments_of_up_to_255_bytes_and_non_ascii(store: ObjectStore, request: pytest.FixtureRequest) -> None:
    # File systems and MinIO take at most 255 bytes per path segment; both stores take exactly that.
    longest, accented = "T" + "t" * 254, "é" * 127 + "a"  # 255 bytes each
    accented_key = f"{longest}/{accented}/0001"
    keys = sorted([accented_key, f"{longest}/f/0002", "tx/y/z"])

    async def body() -> None:
        for i, key in enumerate(keys):
            await store.put(key, f"image {i}".encode(), "image/jpeg")
        for i, key in enumerate(keys):
            assert await store.get(key) == StoredObject(f"image {i}".encode(), "image/jpeg")
        assert await store.list(f"{longest}/") == keys[:2]
        assert await store.list(f"{longest}/{'é' * 100}") == [accented_key]
        assert await store.list("T") == keys[:2]
        for too_long in (f"{longest}x/f/r", f"t/{accented}é/r"):
            with pytest.raises(ValueError, match="longer than 255 bytes"):
                await store.put(too_long, b"x", "image/jpeg")

    run(body())
    assert stored_names(store, request) == keys


def test_open_creates_the_store_and_is_idempotent(
    backend: str, make_store: Callable[[], ObjectStore], request: pytest.FixtureRequest
) -> None:
    store = make_store()

    def exists() -> bool:
        if isinstance(store, LocalObjectStore):
            return store.root.is_dir()
        assert isinstance(store, S3ObjectStore)
        return request.getfixturevalue("weed").client().bucket_exists(store.bucket)

    async def body() -> None:
        assert not exists()
        await store.open()
        assert exists()
        await store.put("t1/f/r", b"kept", "image/jpeg")
        await store.open()  # again: nothing is lost or recreated
        assert await store.get("t1/f/r") == StoredObject(b"kept", "image/jpeg")
        await store.ping()

    run(body())


def test_two_instances_open_the_same_store_concurrently(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Two API replicas starting together: both create the bucket (or folder); neither may fail.
    if backend == "local":
        stores: list[ObjectStore] = [LocalObjectStore(tmp_path / "shared") for _ in range(4)]
    else:
        server: WeedMiniServer = request.getfixturevalue("weed")
        bucket = new_bucket()
        stores = [S3ObjectStore(server.endpoint, server.access_key, server.secret_key, bucket) for _ in range(4)]

    async def body() -> None:
        await asyncio.gather(*(s.open() for s in stores))
        await stores[0].put("t1/f/r", b"shared", "image/jpeg")
        assert await stores[3].get("t1/f/r") == StoredObject(b"shared", "image/jpeg")
        for s in stores:
            await s.close()

    run(body())


def test_a_five_megabyte_object_round_trips(store: ObjectStore) -> None:
    data = os.urandom(5 * 1024 * 1024 + 12345)  # over minio's default part size: must still be one object

    async def body() -> None:
        await store.put("t1/big/r1", data, "image/tiff")
        got = await store.get("t1/big/r1")
        assert got.content_type == "image/tiff"
        assert len(got.data) == len(data) and got.data == data

    run(body())


def test_concurrent_puts_gets_and_deletes_in_one_folder(store: ObjectStore) -> None:
    async def body() -> None:
        await asyncio.gather(*(store.put(f"t1/f/{i:03d}", f"v{i}".encode(), "text/plain") for i in range(20)))
        # Deleting the even ones while writing new ones next to them (local: folders pruned and re-made).
        await asyncio.gather(
            *(store.delete(f"t1/f/{i:03d}") for i in range(0, 20, 2)),
            *(store.put(f"t1/f/{i:03d}", f"v{i}".encode(), "text/plain") for i in range(20, 30)),
        )
        expected = [f"t1/f/{i:03d}" for i in [*range(1, 20, 2), *range(20, 30)]]
        assert await store.list("t1/f/") == sorted(expected)
        got = await asyncio.gather(*(store.get(key) for key in expected))
        assert [g.data for g in got] == [f"v{int(k.rsplit('/', 1)[1])}".encode() for k in expected]

    run(body())


@pytest.mark.parametrize("content_type", ["", "image/jpeg\r\nX-Injected: 1", "image/\u00e9"])
def test_an_invalid_content_type_is_rejected(store: ObjectStore, content_type: str) -> None:
    with pytest.raises(ValueError, match="content type"):
        run(store.put("t1/f/r", b"x", content_type))
    assert run(store.list("")) == []


BAD_KEYS = [
    "",
    "../escape",
    "t1/../../escape",
    "t1/f/..",
    "/etc/passwd",
    "t1\\f\\r",
    "..\\escape",
    "t1//r",
    "t1/f/",
    "./t1/f",
    "t1/./f",
    "t1/.hidden/r",
    "t1/f/r\x00",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_leave_the_root_are_rejected(
    store: ObjectStore, request: pytest.FixtureRequest, tmp_path: Path, key: str
) -> None:
    # The rules are the local folder's, applied to S3 too so that both stores accept the same keys.
    for call in (lambda: store.put(key, b"x", "image/jpeg"), lambda: store.get(key), lambda: store.delete(key)):
        with pytest.raises(ValueError, match="invalid object key"):
            run(call())
    assert stored_names(store, request) == []
    # Nothing was written anywhere, inside the root or out of it.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("prefix", ["../", "/etc/", "t1/../../", "t1\\", "t1//", ".hidden/"])
def test_prefixes_that_could_leave_the_root_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        run(store.list(prefix))


def test_a_read_with_a_limit_reads_at_most_the_limit_plus_one_byte(store: ObjectStore) -> None:
    import tracemalloc

    from faceauth.storage.errors import ObjectTooLarge

    data = os.urandom(20 * 1024 * 1024)

    async def body() -> None:
        await store.put("_uploads/t1/big.jpg", data, "image/jpeg")
        await store.put("t1/small/r1", b"12345", "image/jpeg")
        tracemalloc.start()
        try:
            with pytest.raises(ObjectTooLarge):
                await store.get("_uploads/t1/big.jpg", max_bytes=1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, f"read {peak} bytes for a 1 KiB limit"
        assert (await store.get("t1/small/r1", max_bytes=5)).data == b"12345"  # exactly the limit is fine
        with pytest.raises(ObjectTooLarge):
            await store.get("t1/small/r1", max_bytes=4)
        await store.put("t1/empty/r1", b"", "image/jpeg")
        assert (await store.get("t1/empty/r1", max_bytes=10)).data == b""

    run(body())
