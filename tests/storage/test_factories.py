"""The stores the composition root (faceauth.api.container) builds from the settings."""

from __future__ import annotations

from collections.abc import Callable

from bench.servers.seaweed import WeedMiniServer
from faceauth.api.container import open_object_store
from faceauth.config import load_api_settings
from faceauth.storage.local import LocalObjectStore
from faceauth.storage.objects import ObjectStore
from faceauth.storage.s3 import S3ObjectStore


def test_factory_builds_the_configured_backend(backend: str, make_store: Callable[[], ObjectStore]) -> None:
    assert isinstance(make_store(), LocalObjectStore if backend == "local" else S3ObjectStore)


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
