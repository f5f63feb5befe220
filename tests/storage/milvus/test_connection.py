"""Outages: a server that goes away and comes back, and one that never answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from bench.servers.milvus import MilvusLiteServer
from faceauth.api.container import open_face_index
from faceauth.storage.errors import StorageUnavailable
from tests.storage.milvus.conftest import M1, index_settings, record, unit


@pytest.fixture
def own_lite_server(tmp_path: Path):
    """A milvus-lite gRPC server of this test only (it gets stopped and restarted)."""
    server = MilvusLiteServer(tmp_path / "lite-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_down_is_storage_unavailable_and_the_index_recovers_when_it_returns(own_lite_server, tmp_path):
    rng = np.random.default_rng(7)
    settings = index_settings(own_lite_server.uri, "recovery", tmp_path, milvus_timeout_seconds=1.0)
    index = open_face_index(settings)
    v = unit(rng)
    kept = record("acme", "kept")

    async def before() -> None:
        await index.open()
        await index.add(kept, v)
        await index.ping()

    asyncio.run(before())
    own_lite_server.stop()

    async def while_down() -> None:
        calls = [
            index.ping(),
            index.add(record("acme", "lost"), unit(rng)),
            index.find("acme", "kept"),
            index.search("acme", v, model_id=M1, limit=1, threshold=0.0),
            index.remove("acme", [kept.row_id]),
            index.other_model_ids(M1),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as caught:
                await call
            assert caught.value.store == "vectors" and caught.value.detail
            assert time.monotonic() - started < 5.0, "a down server must fail fast, not hang"

    asyncio.run(while_down())
    own_lite_server.start()  # same port, same data folder

    async def after() -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                await index.ping()
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "the index did not reconnect"
                await asyncio.sleep(0.2)
        assert await index.find("acme", "kept") == [kept]
        assert [m.face_id for m in await index.search("acme", v, model_id=M1, limit=1, threshold=0.9)] == ["kept"]
        again = record("acme", "again")
        await index.add(again, unit(rng))
        assert await index.find("acme", "again") == [again]
        await index.close()

    asyncio.run(after())


def test_an_unreachable_server_fails_open_with_storage_unavailable(tmp_path):
    from bench.servers.process import free_ports

    settings = index_settings(f"http://127.0.0.1:{free_ports(1)[0]}", "nothing", tmp_path, milvus_timeout_seconds=1.0)
    index = open_face_index(settings)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        asyncio.run(index.open())
    assert time.monotonic() - started < 8.0
    asyncio.run(index.close())


def test_a_failure_names_the_index_call_that_failed(tmp_path):
    from bench.servers.process import free_ports

    settings = index_settings(f"http://127.0.0.1:{free_ports(1)[0]}", "nothing", tmp_path, milvus_timeout_seconds=1.0)
    index = open_face_index(settings)
    rng = np.random.default_rng(3)
    calls = {
        "open": index.open,
        "ping": index.ping,
        "insert": lambda: index.add(record("acme", "a"), unit(rng)),
        "query": lambda: index.find("acme", "a"),
        "search": lambda: index.search("acme", unit(rng), model_id=M1, limit=1, threshold=0.0),
        "delete": lambda: index.remove("acme", ["acme/a/1"]),
    }

    async def fail_each() -> None:
        for operation, call in calls.items():
            with pytest.raises(StorageUnavailable) as caught:
                await call()
            assert (caught.value.store, caught.value.operation) == ("vectors", operation)

    asyncio.run(fail_each())
    asyncio.run(index.close())
