"""What only the S3 store has: outages, refused credentials, a server that never answers, a missing bucket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bench.servers.seaweed import WeedMiniServer
from faceauth.storage.objects import StoredObject
from faceauth.storage.s3 import S3ObjectStore
from tests.storage.conftest import expect_each_call_named, expect_unavailable, new_bucket, run


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


def test_s3_a_failure_names_the_store_call_that_failed(weed: WeedMiniServer) -> None:
    store = s3_store(weed)  # never opened: the bucket does not exist, and ping says so itself
    expect_each_call_named(store)
    run(store.close())
