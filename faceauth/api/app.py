"""The Face API: app factory and lifespan (stores opened and the ML client created once, here)."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from faceauth.api import health
from faceauth.client import MLClient
from faceauth.config import APISettings, load_api_settings
from faceauth.faces import routes as faces
from faceauth.faces.service import FaceService
from faceauth.kit.bodies import BodyLimitMiddleware
from faceauth.kit.errors import install_error_handlers
from faceauth.kit.requests import RequestIdMiddleware
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.objects import ObjectStore, open_object_store
from faceauth.storage.vectors import FaceIndex, open_face_index

log = logging.getLogger(__name__)

DESCRIPTION = """Per-tenant face enrolment, 1:N search, get and delete.

Every answer carries `requestId` (also in the `X-Request-ID` header; an incoming one is kept). Errors are
`{"requestId", "error": {"code", "message", "details"}}` with a stable `code`.

Unlike the reference contract, `get` and `delete` take the `tenant` too: a face id is unique only within its tenant,
and one tenant can never read or remove another tenant's face."""


def make_ml_client(settings: APISettings) -> MLClient:
    return MLClient(
        settings.ml_inference_service_url,
        token=settings.ml_inference_auth_token,
        connect_timeout=settings.ml_connect_timeout_seconds,
        timeout=settings.ml_timeout_seconds,
        connect_retries=settings.ml_connect_retries,
        max_connections=settings.ml_max_connections,
    )


async def _open_with_retry(name: str, store: FaceIndex | ObjectStore, deadline_s: float) -> None:
    """Containers start in any order: wait a while for a store rather than crash-looping."""
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            await store.open()
            return
        except StorageUnavailable as exc:
            if time.monotonic() - started > deadline_s:
                raise
            log.warning("%s not reachable yet (%s); retrying in %.1f s", name, exc.detail, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def create_app(
    settings: APISettings | None = None,
    *,
    index: FaceIndex | None = None,
    objects: ObjectStore | None = None,
    ml: MLClient | None = None,
) -> FastAPI:
    """Stores and client may be passed in (tests wrap real ones to inject faults); otherwise built from settings."""
    settings = settings or load_api_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        face_index = index or open_face_index(settings)
        object_store = objects or open_object_store(settings)
        ml_client = ml or make_ml_client(settings)
        await _open_with_retry("the object store", object_store, settings.startup_timeout_seconds)
        await _open_with_retry("Milvus", face_index, settings.startup_timeout_seconds)
        app.state.face_service = FaceService(face_index, object_store, ml_client, settings)
        log.info(
            "Face API ready: milvus %s, %s object store, ML service %s",
            settings.resolved_milvus_uri,
            settings.object_store,
            settings.ml_inference_service_url,
        )
        try:
            yield
        finally:
            if ml is None:
                await ml_client.aclose()
            if index is None:
                await face_index.close()
            if objects is None:
                await object_store.close()

    app = FastAPI(title=settings.api_title, version=settings.api_version, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    # The photo plus the form fields and multipart framing.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_image_bytes + 64 * 1024)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(faces.router)
    return app
