"""Real Milvus back-ends on 127.0.0.1 for the Milvus tests, and the rows and vectors the tests store.

`face_index` is parametrised over the three back-ends the Face API supports:

- lite:        milvus-lite embedded (a `.db` path; pymilvus runs it inside this process)
- lite-server: the `milvus-lite server` command over gRPC
- milvus235:   a Milvus 2.3.5 standalone server

The two servers start once per session, only when a test needs them, in temporary folders, and are killed
at the end. Each test gets its own collection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.servers.milvus import MilvusStandaloneServer
from faceauth.api.container import open_face_index
from faceauth.config import APISettings, load_api_settings
from faceauth.storage.milvus.index import MilvusFaceIndex
from faceauth.storage.records import FaceRecord

BACKENDS = ("lite", "lite-server", "milvus235")

DIM = 512
M1, M2 = "buffalo_s/w600k_mbf", "buffalo_l/w600k_r50"


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def at_cosine(v: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine similarity to unit vector `v` is exactly `cosine`."""
    u = unit(rng)
    u = u - float(u @ v) * v
    u /= np.linalg.norm(u)
    return (cosine * v + np.sqrt(1.0 - cosine**2) * u).astype(np.float32)


_clock = [1_732_412_345_000]


def record(tenant: str, face_id: str, model_id: str = M1, subject_id: str = "") -> FaceRecord:
    _clock[0] += 1  # strictly increasing, so "newest first" is well defined
    key = f"{tenant}/{face_id}/{_clock[0]:016d}-{uuid.uuid4().hex[:8]}"
    return FaceRecord(key, tenant, face_id, key, model_id, _clock[0], subject_id)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the back-end this test runs on (see `milvus_uri`)."""
    return request.param


@pytest.fixture
def milvus_uri(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "lite":
        return str(tmp_path / "milvus.db")
    if backend == "lite-server":
        return request.getfixturevalue("milvus_lite_server").uri
    return request.getfixturevalue("milvus_standalone").uri


def new_collection_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def milvus235_collections(milvus_standalone: MilvusStandaloneServer, request: pytest.FixtureRequest) -> list[str]:
    """Default collections (512-d, HNSW) made ahead for the milvus235 tests, all at once.

    Loading a new collection takes Milvus 2.3.5 about 2.5 s, nearly all of it waiting on its own check intervals;
    made in parallel, twenty take about as long as one. Each test still gets a collection of its own.
    """
    wanted = sum(
        1
        for item in request.session.items
        if "[milvus235" in item.name and {"face_index", "make_index"} & set(getattr(item, "fixturenames", ()))
    )
    names = [new_collection_name() for _ in range(wanted)]

    async def make_all() -> None:
        indexes = [MilvusFaceIndex(milvus_standalone.uri, collection=name, dim=512) for name in names]
        try:
            await asyncio.gather(*(index.open() for index in indexes))
        finally:
            await asyncio.gather(*(index.close() for index in indexes))

    asyncio.run(make_all())
    return names


def index_settings(uri: str, collection: str, data_dir: Path, **overrides: object) -> APISettings:
    values: dict[str, object] = {
        "milvus_uri": uri,
        "milvus_collection": collection,
        "milvus_timeout_seconds": 10.0,
        "data_dir": data_dir,
    }
    values.update(overrides)
    return load_api_settings(**values)


@pytest.fixture
def make_index(
    backend: str, milvus_uri: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., MilvusFaceIndex]]:
    """make_index(collection=None, dim=None, **settings) -> an unopened MilvusFaceIndex on this test's back-end.

    Without `collection`, the test's own default collection (512-d HNSW; on milvus235 it already exists, see
    `milvus235_collections`). Every index made is closed and every collection dropped at the end.
    """
    made: list[MilvusFaceIndex] = []
    default: list[str] = []

    def default_collection() -> str:
        if not default:
            pool = request.getfixturevalue("milvus235_collections") if backend == "milvus235" else []
            default.append(pool.pop() if pool else new_collection_name())
        return default[0]

    def make(collection: str | None = None, dim: int | None = None, **overrides: object) -> MilvusFaceIndex:
        settings = index_settings(milvus_uri, collection or default_collection(), tmp_path, **overrides)
        index = open_face_index(settings, model_dim=dim)
        made.append(index)
        return index

    yield make

    async def cleanup() -> None:
        for index in made:
            await index.close()

    asyncio.run(cleanup())
    drop_collections(milvus_uri, {index.collection for index in made})


def drop_collections(uri: str, names: set[str]) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, timeout=10, dedicated=True)
    try:
        for name in names:
            if client.has_collection(name, timeout=10):
                client.drop_collection(name, timeout=10)
    except Exception:  # a test that stopped its server leaves nothing to drop
        pass
    finally:
        client.close()


@pytest.fixture
def face_index(make_index: Callable[..., MilvusFaceIndex]) -> MilvusFaceIndex:
    """An opened MilvusFaceIndex on a fresh collection (512-d, HNSW, the default settings)."""
    index = make_index()
    asyncio.run(index.open())
    return index
