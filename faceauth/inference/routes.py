"""HTTP routes of the ML inference service: thin, each one a view of the shared pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Response

from faceauth.inference import schemas
from faceauth.inference.deps import (
    BATCH_FIELD,
    Aligned,
    BatchFiles,
    FacesQuery,
    ImagePayload,
    InternalAuth,
    ServiceDep,
)
from faceauth.kit.bodies import image_request_body_openapi
from faceauth.kit.errors import ErrorResponse

router = APIRouter(prefix="/v1", dependencies=[InternalAuth])
health_router = APIRouter()

_IMAGE_BODY = image_request_body_openapi("#/components/schemas/ImageB64Request")


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


_ERRORS = {
    400: _error("Bad input: invalid_base64, empty_image, invalid_json, invalid_multipart"),
    401: _error("unauthorized: ML_SERVICE_AUTH_TOKEN is set and the request does not carry it"),
    413: _error("payload_too_large"),
    415: _error("unsupported_media_type"),
    422: _error("invalid_image, image_truncated, image_too_many_pixels, no_face, validation_error, ..."),
    503: _error("overloaded (with Retry-After) or <model>_model_unavailable"),
}


_ALIGNED_DOC = (
    "With `aligned=true` the image is an already-cropped face (as from another detector, or a 112x112 ArcFace "
    "crop): detection is skipped and the whole image is the face. A non-square crop is centred on a black square "
    "(padded, not stretched), then resized to 112x112 (area-averaged when shrinking, bilinear when enlarging), "
    "so the face should fill the crop as in the ArcFace template (eyes about 34 % and 66 % across, 46 % down). "
    "The face's box is the whole image, its landmarks the template's (assumed, not detected), its score 1 and "
    "its pose null; `faces_count` is 1. NSFW and blur are judged on the crop. Anti-spoofing is not run: it looks "
    "at the face's surroundings (2.7x the face), which a tight crop does not have, so `spoof` is null and "
    '`skipped_checks` is `["spoof"]` (`passed` then means nsfw and blur only).'
)


def _image_route(path: str, model, summary: str, description: str | None = None):
    return router.post(
        path,
        response_model=model,
        summary=summary,
        description=description,
        openapi_extra=_IMAGE_BODY,
        responses=_ERRORS,
    )


@_image_route("/embed", schemas.EmbedResponse, "512-d embedding of the largest face", _ALIGNED_DOC)
async def embed(payload: ImagePayload, service: ServiceDep, aligned: Aligned = False) -> schemas.EmbedResponse:
    return await service.embed(payload, aligned=aligned)


@_image_route("/nsfw", schemas.NsfwResponse, "Is the photo safe (no explicit content)?")
async def nsfw(payload: ImagePayload, service: ServiceDep) -> schemas.NsfwResponse:
    return await service.nsfw(payload)


@_image_route("/spoof", schemas.SpoofResponse, "Is the largest face a presentation attack (print, screen)?")
async def spoof(payload: ImagePayload, service: ServiceDep) -> schemas.SpoofResponse:
    return await service.spoof(payload)


@_image_route("/blur", schemas.BlurResponse, "Is the largest face sharp?")
async def blur(payload: ImagePayload, service: ServiceDep) -> schemas.BlurResponse:
    return await service.blur(payload)


@_image_route("/assess", schemas.AssessResponse, "NSFW + spoof + blur in one pass")
async def assess(payload: ImagePayload, service: ServiceDep) -> schemas.AssessResponse:
    return await service.assess(payload)


@_image_route(
    "/analyze", schemas.AnalyzeResponse, "Assessment and embedding in one pass (used by the Face API)", _ALIGNED_DOC
)
async def analyze(
    payload: ImagePayload, service: ServiceDep, aligned: Aligned = False, faces: FacesQuery = "largest"
) -> schemas.AnalyzeResponse:
    return await service.analyze(payload, aligned=aligned, every_face=faces == "all")


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [BATCH_FIELD],
                    "properties": {BATCH_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}


@router.post(
    "/analyze/batch",
    response_model=schemas.BatchAnalyzeResponse,
    summary="/v1/analyze for up to ML_SERVICE_MAX_BATCH images, each model run once over the batch",
    description="multipart/form-data with one `files` part per image. Each result is what /v1/analyze answers "
    "for that image alone (`ok: true`, `analysis`), or why that image was refused (`ok: false`, `error`: "
    "invalid_image, image_truncated, payload_too_large, ...); one bad image never fails the others. "
    "More files than ML_SERVICE_MAX_BATCH: 413 `batch_too_large`. The batch takes one unit of the service's "
    "capacity per image (503 `overloaded` when they are not free).\n\n" + _ALIGNED_DOC,
    openapi_extra=_BATCH_BODY,
    responses={**_ERRORS, 413: _error("batch_too_large, payload_too_large (the whole body)")},
)
async def analyze_batch(
    files: BatchFiles, service: ServiceDep, aligned: Aligned = False, faces: FacesQuery = "largest"
) -> schemas.BatchAnalyzeResponse:
    return await service.analyze_batch(files, aligned=aligned, every_face=faces == "all")


@_image_route("/detect", schemas.DetectResponse, "Every face: box, landmarks, pose, area, quality")
async def detect(payload: ImagePayload, service: ServiceDep) -> schemas.DetectResponse:
    return await service.detect(payload)


@health_router.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness: the process answers")
async def healthz() -> schemas.HealthResponse:
    return schemas.HealthResponse(status="ok")


@health_router.get(
    "/readyz",
    response_model=schemas.ReadyResponse,
    summary="Readiness: every model's state, path, id and load time",
    responses={503: {"model": schemas.ReadyResponse, "description": "detector or embedder not loaded"}},
)
async def readyz(response: Response, service: ServiceDep) -> schemas.ReadyResponse:
    models = service.pipeline.models
    core_ready = models.ready("detector", "embedder")
    all_ready = all(slot.state in ("ready", "off") for slot in models.slots.values())
    response.status_code = 200 if core_ready else 503
    return schemas.ReadyResponse(
        status="ok" if all_ready else "degraded" if core_ready else "unavailable",
        profile=service.settings.model_profile,
        embedding_dim=models.embedding_dim or 0,
        models={name: schemas.ModelState(**slot.public()) for name, slot in models.slots.items()},
        pool={"workers": service.pool.workers, "in_flight": service.pool.in_flight, "rejected": service.pool.rejected},
    )
