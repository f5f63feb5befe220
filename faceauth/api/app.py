"""The Face API: app factory and lifespan (the container's stores opened and its ML client created once, here)."""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from faceauth.api.container import Container
from faceauth.apikeys import routes as apikeys
from faceauth.auth.cache import KeyCache
from faceauth.auth.middleware import AuthMiddleware
from faceauth.auth.ratelimit import FailureLimiter, RateLimiter
from faceauth.clustering import routes as clustering
from faceauth.config import APISettings, load_api_settings
from faceauth.console.routes import PAGE_PREFIXES, install_pages
from faceauth.coordination import open_coordinator
from faceauth.faces import routes as faces
from faceauth.health import routes as health
from faceauth.images import routes as image_links
from faceauth.images.links import LINK_PATH
from faceauth.kit.bodies import BodyLimitMiddleware, keep_uploads_in_memory
from faceauth.kit.docs import DOCS_ASSETS, install_offline_docs
from faceauth.kit.errors import install_error_handlers
from faceauth.kit.metrics import FACE_API, install_metrics
from faceauth.kit.requests import RequestIdMiddleware
from faceauth.liveness import routes as liveness
from faceauth.liveness.service import MAX_FRAMES
from faceauth.maintenance import start_sweep, stop_sweep
from faceauth.ml_client import MLClient
from faceauth.receipts import routes as receipts
from faceauth.storage.milvus.schema import IncompatibleCollection
from faceauth.storage.objects import ObjectStore
from faceauth.storage.vectors import FaceIndex
from faceauth.subjects import routes as subjects
from faceauth.tenants import routes as tenants
from faceauth.verification import routes as verification
from faceauth.verification.service import MAX_PROBES
from faceauth.web.handlers import install_failure_handlers
from faceauth.web.params import ACCESS_ERRORS

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


def create_app(
    settings: APISettings | None = None,
    *,
    index: FaceIndex | None = None,
    objects: ObjectStore | None = None,
    ml: MLClient | None = None,
) -> FastAPI:
    """Stores and client may be passed in (tests wrap real ones to inject faults); otherwise built from settings."""
    settings = settings or load_api_settings()
    # Built here, before the middleware that takes its rate limits; it connects on first use.
    coordinator = open_coordinator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        container = Container(settings, index=index, objects=objects, ml=ml, coordinator=coordinator)
        app.state.metrics.attach(container.index, container.objects, container.ml)
        try:
            await container.open(wait_s=settings.startup_timeout_seconds)
        except IncompatibleCollection as exc:
            # A configuration problem (another model profile's dimension, say): one plain line a user reads,
            # above the server's traceback.
            print(f"faceauth: {exc}", file=sys.stderr, flush=True)
            raise
        if settings.auth_disabled:
            log.warning("FACEAUTH_AUTH_DISABLED=true: the Face API accepts requests WITHOUT API keys (local use only)")
        app.state.container = container
        app.state.services = container.services
        log.info(
            "Face API ready: milvus %s, %s object store, ML service %s",
            settings.resolved_milvus_uri,
            settings.object_store,
            settings.ml_inference_service_url,
        )
        # Leftovers of interrupted writes, swept in the background: start-up does not wait (FACEAUTH_STARTUP_SWEEP).
        sweep = start_sweep(container.repository) if settings.startup_sweep else None
        container.presence.start()
        if not coordinator.shared:
            log.info("FACEAUTH_COORDINATION_URL is not set: locks and rate limits are this process's own (one replica)")
        try:
            yield
        finally:
            await container.presence.stop()
            await stop_sweep(sweep)  # before the stores it uses close
            await container.close()
            await coordinator.close()

    app = FastAPI(
        title=settings.api_title,
        version=settings.api_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package instead (install_offline_docs)
        redoc_url=None,
        form_limits={
            # A text field may hold a whole photo as base64 (or a data: URL of one).
            "max_part_size": (settings.max_image_bytes // 3 + 1) * 4 + 1024,
            "max_files": max(settings.max_batch, MAX_PROBES + 1, MAX_FRAMES),
            # ids, subject_ids and one photo field per batch item, plus the named fields.
            "max_fields": 3 * settings.max_batch + 32,
        },
    )
    app.state.settings = settings
    app.state.container = None  # until the lifespan has opened it

    def key_cache() -> KeyCache | None:
        return app.state.container.key_cache if app.state.container else None

    install_error_handlers(app)
    install_failure_handlers(app)
    install_offline_docs(app)
    keep_uploads_in_memory(settings.max_image_bytes)
    # Photos plus the form fields and multipart framing; routes that take several photos get room for them.
    framing = 64 * 1024
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_image_bytes + framing,
        path_limits={
            "/v1/faces/verify": (MAX_PROBES + 1) * settings.max_image_bytes + framing,
            "/v1/faces/batch/insert": settings.max_batch * settings.max_image_bytes + framing,
            # Up to ~24 characters per JSON number (the cap is what 512-d vectors need, not a photo's size).
            "/v1/faces/cluster": settings.cluster_max_embeddings * settings.milvus_embedding_dim * 24 + framing,
        },
        prefix_limits={"/v1/liveness/sessions/": MAX_FRAMES * settings.max_image_bytes + framing},
    )
    # Outermost last: request id, then the key check (before any body is read), then the body limits.
    app.add_middleware(
        AuthMiddleware,
        disabled=settings.auth_disabled,
        # Shared by every replica when they coordinate through a server, else this process's own buckets.
        limiter=coordinator.rate_limits(settings.rate_limit_per_second, settings.rate_limit_burst)
        or RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        key_cache=key_cache,
        failures=FailureLimiter(settings.auth_failures_per_second, settings.auth_failures_burst),
        # Signed image links (the signature is the permission), Swagger UI's static files, the console's pages.
        open_prefixes=(LINK_PATH, DOCS_ASSETS, *PAGE_PREFIXES),
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(image_links.router)  # signed links: no API key
    app.include_router(liveness.client_router)  # the browser client script: no API key
    app.include_router(receipts.router)  # the receipts' public keys: no API key
    install_pages(app, settings)  # the console and kiosk pages: no API key to load, the key is given in them
    for router in (
        faces.router,
        clustering.router,
        verification.router,
        subjects.router,
        tenants.router,
        liveness.router,
        apikeys.router,
        apikeys.caller_router,
    ):
        app.include_router(router, responses=ACCESS_ERRORS)
    install_metrics(app, FACE_API)  # last: its middleware is the outermost, timing everything
    return app
