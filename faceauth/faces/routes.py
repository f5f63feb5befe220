"""/v1/faces: enrol, search, get, delete. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query

from faceauth.api.deps import FaceServiceDep, ImageDep, RequestIdDep, SettingsDep
from faceauth.faces import schemas
from faceauth.faces.service import Enrolment, iso_utc
from faceauth.storage.vectors import FaceRecord

router = APIRouter(prefix="/v1/faces", tags=["faces"])

_ID_DOC = f"letters, digits and . _ : @ - (first a letter or digit), at most {schemas.FACE_ID_MAX} characters"
_TENANT_DOC = f"tenant namespace: same characters as ids, at most {schemas.TENANT_MAX}"
FaceIdForm = Annotated[str, Form(description=_ID_DOC, pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX)]
TenantForm = Annotated[str, Form(description=_TENANT_DOC, pattern=schemas.ID_PATTERN, max_length=schemas.TENANT_MAX)]
TenantQuery = Annotated[str, Query(description=_TENANT_DOC, pattern=schemas.ID_PATTERN, max_length=schemas.TENANT_MAX)]


def _error(description: str) -> dict:
    return {"model": schemas.ErrorResponse, "description": description}


_COMMON = {
    413: _error("the image is larger than FACEAUTH_MAX_IMAGE_BYTES"),
    503: _error("the ML service, Milvus or the object store is unavailable: nothing was written"),
}
_ENROL = {
    **_COMMON,
    422: _error(
        "bad field, unreadable image, or the photo failed the quality check "
        "(quality_check_failed / no_face_detected / face_too_small / multiple_faces; details.failed_checks)"
    ),
}


def _face_out(record: FaceRecord) -> dict:
    return {
        "face_id": record.face_id,
        "tenant": record.tenant,
        "object_key": record.object_key,
        "model_id": record.model_id,
        "created_at": iso_utc(record.created_at_ms),
    }


def _enrolled(request_id: str, operation: str, result: Enrolment) -> dict:
    return {
        "requestId": request_id,
        "imageQualityAssessment": result.analysis.assessment(),
        "userOperationResult": {"operation": operation, "status": "success"},
        "face": _face_out(result.record),
    }


@router.post(
    "/insert",
    response_model=schemas.EnrollResponse,
    summary="Enrol a new face (409 if the id exists in the tenant)",
    responses={**_ENROL, 409: _error("face_already_exists: the id is taken in this tenant")},
)
async def insert(
    id: FaceIdForm, tenant: TenantForm, image: ImageDep, service: FaceServiceDep, request_id: RequestIdDep
):
    result = await service.enroll(tenant, id, image, replace=False, request_id=request_id)
    return _enrolled(request_id, "INSERT", result)


@router.post(
    "/upsert",
    response_model=schemas.EnrollResponse,
    summary="Enrol or replace a face (the previous image and vector are removed)",
    responses=_ENROL,
)
async def upsert(
    id: FaceIdForm, tenant: TenantForm, image: ImageDep, service: FaceServiceDep, request_id: RequestIdDep
):
    result = await service.enroll(tenant, id, image, replace=True, request_id=request_id)
    return _enrolled(request_id, "UPSERT", result)


@router.post(
    "/search",
    response_model=schemas.SearchResponse,
    summary="1:N search in one tenant; a photo that fails the quality check gets no matches (and says why)",
    responses={**_COMMON, 422: _error("bad field or unreadable image")},
)
async def search(
    tenant: TenantForm,
    image: ImageDep,
    service: FaceServiceDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    id: Annotated[str | None, Form(description="an identifier for this query, echoed", max_length=256)] = None,
    top_k: Annotated[int | None, Query(ge=1, le=schemas.TOP_K_MAX, description="1..100, default 5")] = None,
    threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="minimum cosine score, 0..1; default from settings")
    ] = None,
):
    top_k = top_k or settings.search_default_top_k
    threshold = settings.milvus_search_threshold if threshold is None else threshold
    outcome = await service.search(tenant, image, top_k=top_k, threshold=threshold, request_id=request_id)
    return {
        "requestId": request_id,
        "queryId": id,
        "imageQualityAssessment": outcome.analysis.assessment(),
        "searchResult": {
            "matches": [{"id": m.face_id, "score": round(m.score, 6)} for m in outcome.matches],
            "threshold": threshold,
            "top_k": top_k,
            "model_id": outcome.analysis.model_id,
            "skipped_reason": outcome.skipped_reason,
        },
    }


@router.delete(
    "/delete",
    response_model=schemas.DeleteResponse,
    summary="Delete a face of a tenant: its vector and its image",
    responses={**_COMMON, 404: _error("face_not_found")},
)
async def delete(
    id: Annotated[str, Query(pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX, description=_ID_DOC)],
    tenant: TenantQuery,
    service: FaceServiceDep,
    request_id: RequestIdDep,
):
    await service.delete(tenant, id)
    return {"requestId": request_id, "userOperationResult": {"operation": "DELETE", "status": "success"}}


@router.get(
    "/get/{face_id}",
    response_model=schemas.FaceResponse,
    summary="A face's record in a tenant",
    responses={**_COMMON, 404: _error("face_not_found")},
)
async def get(
    face_id: Annotated[str, Path(pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX, description=_ID_DOC)],
    tenant: TenantQuery,
    service: FaceServiceDep,
    request_id: RequestIdDep,
):
    record = await service.get(tenant, face_id)
    return {"requestId": request_id, **_face_out(record)}
