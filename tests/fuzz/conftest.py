"""Fixtures of the OpenAPI fuzz tests: both services in-process (ASGI) with their real models and stores.

Schemathesis reaches an ASGI app in-process and runs the app's lifespan itself (on its own event loop, once per
app); the fixtures end those lifespans when they are done, so the Face API's stores are closed before its tmp
dir goes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from schemathesis.python import asgi

from faceauth.api.app import create_app as create_face_api
from faceauth.api.container import open_object_store
from faceauth.auth.keys import KeyStore
from faceauth.config import APISettings, MLSettings
from faceauth.inference.app import create_app as create_ml_app
from faceauth.inference.app import load_service
from faceauth.inference.service import InferenceService
from faceauth.photos import fetch
from tests.apitest import api_settings
from tests.fuzz import ML_TOKEN, Target
from tests.inference.conftest import ml_settings


@pytest.fixture(scope="session")
def fuzz_ml(
    spoof_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MLSettings, InferenceService]]:
    """The real models, loaded once, behind an internal token as in production."""
    settings = ml_settings(spoof_model_path, tmp_path_factory.mktemp("fuzz-models"), auth_token=ML_TOKEN)
    service = load_service(settings)
    try:
        yield settings, service
    finally:
        service.pool.shutdown()


@pytest.fixture(scope="module")
def ml_target(fuzz_ml: tuple[MLSettings, InferenceService]) -> Iterator[Target]:
    """The ML service in-process with the real models loaded."""
    settings, service = fuzz_ml
    try:
        yield Target(create_ml_app(settings, service=service), {"Authorization": f"Bearer {ML_TOKEN}"})
    finally:
        asgi.shutdown_lifespans()


def _admin_key(settings: APISettings) -> str:
    """An admin API key, written to the API's own key store before the API starts."""

    async def create() -> str:
        store = open_object_store(settings)
        await store.open()
        try:
            _, token = await KeyStore(store).create(None, "fuzz")
            return token
        finally:
            await store.close()

    return asyncio.run(create())


async def offline_resolver(host: str, port: int) -> list[str]:
    """DNS as on a machine without network: IP literals and localhost only (tests reach 127.0.0.1 alone)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    if host.lower().rstrip(".") == "localhost":
        return ["127.0.0.1"]
    raise socket.gaierror(socket.EAI_NONAME, f"{host}: not resolved (offline test)")


@pytest.fixture(scope="module")
def face_api_target(ml_service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The Face API in-process: embedded stores (milvus-lite, local images) under a tmp dir, the real ML service.

    Requests carry an admin key; the rate limit is out of reach (the fuzzer is one fast client).
    """
    settings = api_settings(
        ml_service,
        tmp_path_factory.mktemp("fuzz-face-api"),
        rate_limit_per_second=100_000,
        rate_limit_burst=1_000_000,
    )
    token = _admin_key(settings)
    with pytest.MonkeyPatch.context() as patch:
        # Photo URLs with random host names fail as unresolvable instead of leaving the machine.
        patch.setattr(fetch, "system_resolver", offline_resolver)
        try:
            yield Target(create_face_api(settings), {"X-Api-Key": token, "Authorization": f"Bearer {token}"})
        finally:
            asgi.shutdown_lifespans()
