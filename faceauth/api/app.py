"""The Face API: app factory and lifespan (stores opened and the ML client created once, here)."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from faceauth.api import health
from faceauth.api.params import error
from faceauth.auth.keys import KeyStore
from faceauth.auth.middleware import AuthMiddleware, KeyCache
from faceauth.auth.ratelimit import RateLimiter
from faceauth.clustering import routes as clustering
from faceauth.clustering.service import ClusterService
from faceauth.config import APISettings, load_api_settings
from faceauth.faces import routes as faces
from faceauth.faces.service import FaceService
from faceauth.images import routes as image_links
from faceauth.images.sources import make_image_loader
from faceauth.kit.bodies import BodyLimitMiddleware, keep_uploads_in_memory
from faceauth.kit.errors import install_error_handlers
from faceauth.kit.metrics import FACE_API, install_metrics
from faceauth.kit.requests import RequestIdMiddleware
from faceauth.maintenance import start_sweep, stop_sweep
from faceauth.ml_client import MLClient
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.factories import open_face_index, open_object_store
from faceauth.storage.objects import ObjectStore
from faceauth.storage.vectors import FaceIndex
from faceauth.subjects import routes as subjects
from faceauth.subjects.service import SubjectService
from faceauth.tenants import routes as tenants
from faceauth.tenants.service import TenantService
from faceauth.verification import routes as verification
from faceauth.verification.service import MAX_PROBES, VerificationService

log = logging.getLogger(__name__)

DESCRIPTION = """Per-tenant face enrolment (single, batch, subjects with several faces), 1:N search, 1:1
verification, detection, clustering, get, delete and tenant purge.

Photos can be uploaded (multipart), or given as base64 or as a URL (http(s) with SSRF protection, or s3:// of the
configured store).

Every call needs an API key (`X-Api-Key: fa_...` or `Authorization: Bearer fa_...`; create one with
`faceauth keys create`). A tenant key acts on its own tenant only (403 otherwise); an admin key on all. Each key
has a rate limit (429 with `Retry-After`).

Every answer carries `requestId` (also in the `X-Request-ID` header; an incoming one is kept). Errors are
`{"requestId", "error": {"code", "message", "details"}}` with a stable `code`.

Unlike the reference contract, `get` and `delete` take the `tenant` too: a face id is unique only within its tenant,
and one tenant can never read or remove another tenant's face."""


_ACCESS_ERRORS = {
    401: error("unauthorized / invalid_api_key: no API key, or an unknown or revoked one"),
    403: error("forbidden: the key's tenant is not the one the request names (or an admin key is needed)"),
    429: error("rate_limited: this key's token bucket is empty; see Retry-After"),
}


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
        app.state.metrics.attach(face_index, object_store, ml_client)
        await _open_with_retry("the object store", object_store, settings.startup_timeout_seconds)
        await _open_with_retry("Milvus", face_index, settings.startup_timeout_seconds)
        images = make_image_loader(object_store, settings)
        face_service = FaceService(face_index, object_store, ml_client, settings, images)
        app.state.face_service = face_service
        app.state.key_store = KeyStore(object_store)
        app.state.key_cache = KeyCache(app.state.key_store)
        if settings.auth_disabled:
            log.warning("FACEAUTH_AUTH_DISABLED=true: the Face API accepts requests WITHOUT API keys (local use only)")
        app.state.subject_service = SubjectService(face_service)
        app.state.tenant_service = TenantService(face_index, object_store)
        app.state.verification_service = VerificationService(face_service, settings)
        app.state.cluster_service = ClusterService(face_index, ml_client, settings)
        log.info(
            "Face API ready: milvus %s, %s object store, ML service %s",
            settings.resolved_milvus_uri,
            settings.object_store,
            settings.ml_inference_service_url,
        )
        # Leftovers of interrupted writes, swept in the background: start-up does not wait (FACEAUTH_STARTUP_SWEEP).
        sweep = start_sweep(face_service) if settings.startup_sweep else None
        try:
            yield
        finally:
            await stop_sweep(sweep)  # before the stores it uses close
            await images.aclose()
            if ml is None:
                await ml_client.aclose()
            if index is None:
                await face_index.close()
            if objects is None:
                await object_store.close()

    app = FastAPI(
        title=settings.api_title,
        version=settings.api_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        form_limits={
            # A text field may hold a whole photo as base64 (or a data: URL of one).
            "max_part_size": (settings.max_image_bytes // 3 + 1) * 4 + 1024,
            "max_files": max(settings.max_batch, MAX_PROBES + 1),
            # ids, subject_ids and one photo field per batch item, plus the named fields.
            "max_fields": 3 * settings.max_batch + 32,
        },
    )
    app.state.settings = settings
    install_error_handlers(app)
    keep_uploads_in_memory(settings.max_image_bytes)
    # Photos plus the form fields and multipart framing; routes that take several photos get room for them.
    framing = 64 * 1024
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_image_bytes + framing,
        path_limits={
            "/v1/faces/verify": (MAX_PROBES + 1) * settings.max_image_bytes + framing,
            "/v1/faces/batch/insert": settings.max_batch * settings.max_image_bytes + framing,
            "/v1/faces/cluster": settings.cluster_max_faces * 16 * 1024 + framing,  # ~512 floats as JSON text each
        },
    )
    # Outermost last: request id, then the key check (before any body is read), then the body limits.
    app.add_middleware(
        AuthMiddleware,
        disabled=settings.auth_disabled,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(image_links.router)  # signed links: no API key
    for router in (faces.router, clustering.router, verification.router, subjects.router, tenants.router):
        app.include_router(router, responses=_ACCESS_ERRORS)
    install_metrics(app, FACE_API)  # last: its middleware is the outermost, timing everything
    return app
