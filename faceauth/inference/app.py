"""The ML inference service: app factory and lifespan (models are loaded once, here)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import faceauth
from faceauth.config import MLSettings, load_ml_settings
from faceauth.inference.artefacts import registry
from faceauth.inference.modelset import ModelSet
from faceauth.inference.pipeline import Pipeline
from faceauth.inference.routes import health_router, router
from faceauth.inference.runtime import ComputePool
from faceauth.inference.schemas import ImageB64Request
from faceauth.inference.service import InferenceService
from faceauth.kit.bodies import BodyLimitMiddleware, keep_uploads_in_memory
from faceauth.kit.docs import install_offline_docs
from faceauth.kit.errors import install_error_handlers
from faceauth.kit.metrics import ML_SERVICE, install_metrics
from faceauth.kit.requests import RequestIdMiddleware

log = logging.getLogger(__name__)


def ensure_spoof_model(settings: MLSettings) -> None:
    """First start on a fresh install: fetch the one default model no package ships (checksummed)."""
    if settings.spoof_local_model_path is not None or not settings.auto_fetch:
        return
    target = registry.default_spoof_path(settings.model_dir)
    if target.is_file():
        return
    from faceauth.inference.artefacts.fetch import fetch

    try:
        log.info("fetching the anti-spoof model into %s (first start)", settings.model_dir)
        fetch(registry.SPOOF_ARTIFACT, settings.model_dir)
    except Exception as exc:  # no network: the service still starts; /v1/spoof answers 503
        log.error(
            "could not fetch the anti-spoof model: %s. Spoof checks answer 503 until it is present: run "
            "`faceauth models fetch minifasnet_v2` when online, or set ML_SERVICE_SPOOF_LOCAL_MODEL_PATH",
            exc,
        )


def fetch_hub_checkpoints(settings: MLSettings) -> None:
    """The reference's `ML_SERVICE_*_HF_REPO_ID`: fetch a missing local checkpoint from the hub, once.

    The file name is the one in `*_LOCAL_MODEL_PATH`. There is no published checksum for an arbitrary repo, so
    the sha256 of what arrived is logged: pin it by keeping that file rather than re-downloading it.
    """
    if not settings.auto_fetch:
        return
    from faceauth.inference.artefacts.fetch import download_hub_file

    for kind in ("nsfw", "spoof", "blur"):
        repo = getattr(settings, f"{kind}_hf_repo_id")
        path = getattr(settings, f"{kind}_local_model_path")
        if not repo or path is None or path.is_file():
            continue
        try:
            digest = download_hub_file(repo, path.name, path)
            log.warning("fetched %s model %s from hub repo %s (unpinned), sha256 %s", kind, path, repo, digest)
        except Exception as exc:
            log.error("could not fetch the %s model from hub repo %s: %s", kind, repo, exc)


def load_service(settings: MLSettings) -> InferenceService:
    fetch_hub_checkpoints(settings)
    ensure_spoof_model(settings)
    models = ModelSet.load(settings)
    pool = ComputePool(workers=settings.workers, max_queue=settings.max_queue)
    return InferenceService(Pipeline(models, settings), pool, settings)


def create_app(settings: MLSettings | None = None, service: InferenceService | None = None) -> FastAPI:
    settings = settings or load_ml_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = service or load_service(settings)
        app.state.metrics.attach(app.state.service)
        owned = service is None
        log.info("model profile %s", settings.model_profile)
        for name, slot in app.state.service.pipeline.models.slots.items():
            log.info("model %-8s %-7s %s  licence: %s", name, slot.state, slot.model_id or slot.error, slot.license)
        try:
            yield
        finally:
            if owned:
                app.state.service.pool.shutdown()

    app = FastAPI(
        title="faceauth ML inference",
        version=faceauth.__version__,
        description="Face detection, ArcFace embeddings and NSFW / anti-spoof / blur checks. "
        "Images as JSON `{image_b64}`, multipart `file`, or a raw image body.",
        lifespan=lifespan,
        docs_url=None,  # served from the package instead (install_offline_docs)
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_offline_docs(app)
    keep_uploads_in_memory(settings.max_image_bytes)
    # Base64 inflates by 4/3; allow that plus room for multipart framing. The batch route takes raw multipart
    # files only: max_batch of them, each with its part headers.
    batch_limit = settings.max_batch * (settings.max_image_bytes + 1024) + 65536
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_image_bytes * 4 // 3 + 65536,
        path_limits={"/v1/analyze/batch": batch_limit},
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router)
    app.include_router(router)
    install_metrics(app, ML_SERVICE)  # last: its middleware is the outermost, timing everything

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {})["ImageB64Request"] = (
                ImageB64Request.model_json_schema()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
