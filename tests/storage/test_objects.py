"""Both object stores against one contract: LocalObjectStore in a temporary folder, S3ObjectStore on a real S3
server (SeaweedFS `weed mini`, started once per session on 127.0.0.1 with credentials it checks).

Then what only one of them has: S3 outages, refused credentials and a server that never answers; the local
folder's interrupted writes and broken root.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers.seaweed import WeedMiniServer
from faceauth.config import load_api_settings
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.objects import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    open_object_store,
)

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


# -- the contract, on both back-ends -------------------------------------------------------------------------


def test_factory_builds_the_configured_backend(backend: str, make_store: Callable[[], ObjectStore]) -> None:
    assert isinstance(make_store(), LocalObjectStore if backend == "local" else S3ObjectStore)


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


# -- S3 only -----------------------------------------------------------------------------------------------------


def s3_store(server: WeedMiniServer, bucket: str | None = None, **options: Any) -> S3ObjectStore:
    access_key = options.pop("access_key", server.access_key)
    secret_key = options.pop("secret_key", server.secret_key)
    return S3ObjectStore(server.endpoint, access_key, secret_key, bucket or new_bucket(), **options)


@pytest.mark.parametrize("wrong", ["secret key", "access key"])
def test_s3_wrong_credentials_are_unavailable_and_say_so(weed: WeedMiniServer, wrong: str) -> None:
    bucket = new_bucket()
    good = s3_store(weed, bucket)
    run(good.open())
    bad_keys = {"secret_key": "not-the-secret"} if wrong == "secret key" else {"access_key": "nobody"}
    bad = s3_store(weed, bucket, **bad_keys)
    calls = [
        bad.open,
        bad.ping,
        lambda: bad.put("t1/f/r", b"x", "image/jpeg"),
        lambda: bad.get("t1/f/r"),
        lambda: bad.list("t1/"),
        lambda: bad.delete("t1/f/r"),
    ]
    for call in calls:
        error = expect_unavailable(call, within_s=5)
        assert "refused the credentials" in error.detail
        assert weed.secret_key not in error.detail
    assert run(good.list("")) == []  # the refused put wrote nothing
    run(good.close())
    run(bad.close())


def test_s3_outage_fails_fast_and_the_same_instance_recovers(weed: WeedMiniServer) -> None:
    store = s3_store(weed)
    big = os.urandom(1024 * 1024)

    async def before() -> None:
        await store.open()
        await store.put("t1/f/r1", b"stored before the outage", "image/jpeg")
        await store.put("t1/f/big", big, "image/png")

    run(before())
    try:
        weed.stop()
        calls = [
            store.ping,
            store.open,
            lambda: store.get("t1/f/r1"),
            lambda: store.put("t1/f/r2", b"x", "image/jpeg"),
            lambda: store.list("t1/"),
            lambda: store.delete("t1/f/r1"),
        ]
        for call in calls:
            error = expect_unavailable(call, within_s=5)
            assert "cannot connect" in error.detail and weed.endpoint in error.detail
        weed.start()
    finally:
        if not weed.running:  # later tests share this server
            weed.start()

    async def after() -> None:
        await store.ping()
        assert await store.get("t1/f/r1") == StoredObject(b"stored before the outage", "image/jpeg")
        assert await store.get("t1/f/big") == StoredObject(big, "image/png")
        await store.put("t1/f/r2", b"after", "image/jpeg")
        assert await store.list("t1/") == ["t1/f/big", "t1/f/r1", "t1/f/r2"]
        await store.close()

    run(after())


@pytest.fixture
def silent_server() -> Iterator[str]:
    """host:port of a socket that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        host, port = listener.getsockname()
        yield f"{host}:{port}"


def test_s3_server_that_never_answers_times_out(silent_server: str) -> None:
    store = S3ObjectStore(silent_server, "key", "secret", "faceauth", region="us-east-1", connect_timeout=1, timeout=2)
    # The read timeout, without retries on top (a stuck server would otherwise hold each call for minutes).
    error = expect_unavailable(lambda: store.get("t1/f/r"), within_s=4)
    assert "did not answer in time" in error.detail
    expect_unavailable(store.ping, within_s=2)  # readiness probes use the connect timeout for reading too
    run(store.close())


def test_s3_missing_bucket_is_unavailable_not_empty(weed: WeedMiniServer) -> None:
    # The Face API takes "no image under this prefix" as "incomplete face": a lost bucket must not look empty.
    store = s3_store(weed)  # never opened: the bucket does not exist
    calls = [
        store.ping,
        lambda: store.list("t1/"),
        lambda: store.get("t1/f/r"),
        lambda: store.delete("t1/f/r"),
        lambda: store.put("t1/f/r", b"x", "image/jpeg"),
    ]
    for call in calls:
        assert "does not exist" in expect_unavailable(call, within_s=5).detail
    assert not weed.client().bucket_exists(store.bucket)  # nor did the put create it
    run(store.close())


def test_s3_unreachable_host_is_unavailable_not_a_minio_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = S3ObjectStore(f"127.0.0.1:{port}", "key", "secret", "faceauth", retries=0)
    error = expect_unavailable(store.open, within_s=3)
    assert "Connection refused" in error.detail
    run(store.close())


def test_s3_invalid_bucket_name_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="bucket"):
        S3ObjectStore("127.0.0.1:9", "key", "secret", "Not_A_Bucket")


def test_s3_settings_reach_the_connection_pool(weed: WeedMiniServer) -> None:
    settings = load_api_settings(
        object_store="s3",
        minio_endpoint=weed.endpoint,
        minio_bucket="faceauth",
        minio_connect_timeout_seconds=1.5,
        minio_timeout_seconds=7,
        minio_retries=4,
    )
    store = open_object_store(settings)
    assert isinstance(store, S3ObjectStore)
    assert (store.endpoint, store.bucket) == (weed.endpoint, "faceauth")
    timeout = store._http.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (1.5, 7)
    assert store._http.connection_pool_kw["retries"].total == 4


# -- local only --------------------------------------------------------------------------------------------------


def test_local_stores_files_under_the_root_and_prunes_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)

    async def body() -> None:
        await store.open()
        await store.put("t1/f/r1", b"abc", "image/jpeg")
        await store.put("t1/g/r1", b"def", "image/jpeg")
        assert (root / "t1" / "f" / "r1").is_file() and (root / "t1" / "g" / "r1").is_file()
        await store.delete("t1/f/r1")
        assert not (root / "t1" / "f").exists()  # the face's folder went with its last image
        assert (root / "t1" / "g" / "r1").is_file()
        await store.delete("t1/g/r1")
        assert root.is_dir() and list(root.iterdir()) == []  # never the root itself

    run(body())


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_local_interrupted_put_leaves_no_partial_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    run(store.put("t1/f/old", b"the previous version", "image/png"))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    for key in ("t1/f/new", "t1/f/old"):
        error = expect_unavailable(lambda key=key: store.put(key, BINARY * 100, "image/jpeg"), within_s=5)
        assert "No space left on device" in error.detail
    monkeypatch.undo()

    async def after() -> None:
        with pytest.raises(ObjectNotFound):
            await store.get("t1/f/new")
        assert await store.get("t1/f/old") == StoredObject(b"the previous version", "image/png")
        assert await store.list("") == ["t1/f/old"]

    run(after())
    # No temporary file was left behind either.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["t1/f/old"]


def test_local_temporary_files_are_invisible(tmp_path: Path) -> None:
    # What a crash mid-put leaves: a temporary file next to the target. get() and list() must not see it.
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    run(store.put("t1/f/r1", b"done", "image/jpeg"))
    (root / "t1" / "f" / ".r2.abc123.tmp").write_bytes(b"half an ima")
    assert run(store.list("t1/")) == ["t1/f/r1"]
    with pytest.raises(ValueError):
        run(store.get("t1/f/.r2.abc123.tmp"))


def test_local_foreign_file_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    (root / "t1" / "f").mkdir(parents=True)
    (root / "t1" / "f" / "r1").write_bytes(b"\xff\xd8\xff a jpeg copied in by hand")
    error = expect_unavailable(lambda: store.get("t1/f/r1"), within_s=5)
    assert "not an object file" in error.detail


def test_local_missing_or_broken_root_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalObjectStore(root)
    run(store.open())
    root.rmdir()
    root.write_bytes(b"not a folder")  # e.g. a volume that is no longer mounted as expected
    assert "not a folder" in expect_unavailable(store.ping, within_s=5).detail
    expect_unavailable(lambda: store.put("t1/f/r", b"x", "image/jpeg"), within_s=5)
    expect_unavailable(store.open, within_s=5)
    root.unlink()
    # A vanished root (an unmounted volume?) is neither an empty store nor re-created by a put; open() makes it.
    calls = [
        store.ping,
        lambda: store.put("t1/f/r", b"x", "image/jpeg"),
        lambda: store.get("t1/f/r"),
        lambda: store.list("t1/"),
        lambda: store.delete("t1/f/r"),
    ]
    for call in calls:
        assert "missing or not a folder" in expect_unavailable(call, within_s=5).detail
    assert not root.exists()
    run(store.open())
    run(store.put("t1/f/r", b"x", "image/jpeg"))
    assert run(store.get("t1/f/r")) == StoredObject(b"x", "image/jpeg")


def test_local_key_through_an_existing_object_is_a_value_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    run(store.open())
    run(store.put("t1/f/r", b"x", "image/jpeg"))
    with pytest.raises(ValueError, match="existing object"):
        run(store.put("t1/f/r/deeper", b"y", "image/jpeg"))
    with pytest.raises(ValueError, match="prefix of other objects"):
        run(store.put("t1/f", b"y", "image/jpeg"))
    assert run(store.list("")) == ["t1/f/r"]
