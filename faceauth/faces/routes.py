"""/v1/faces: enrol (one or a batch), search, detect, get, delete. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile

from faceauth.api.deps import FaceServiceDep, ImageDep, PrincipalDep, RequestIdDep, SettingsDep, read_upload
from faceauth.api.params import (
    COMMON_ERRORS,
    ID_DOC,
    PHOTO_ERRORS,
    AlignedForm,
    FaceIdForm,
    TenantForm,
    TenantQuery,
    error,
)
from faceauth.faces import schemas
from faceauth.faces.service import BatchItem, Enrolment, iso_utc
from faceauth.images.sources import ImageSource
from faceauth.kit.errors import AppError
from faceauth.storage.records import FaceRecord

router = APIRouter(prefix="/v1/faces", tags=["faces"])

SubjectForm = Annotated[
    str | None,
    Form(
        description="the person this face belongs to (several faces may share it); default: the face id",
        pattern=schemas.ID_PATTERN,
        max_length=schemas.FACE_ID_MAX,
    ),
]
DedupForm = Annotated[
    bool,
    Form(
        description="refuse (409 duplicate_face) when the photo matches another subject of the tenant above the "
        "search threshold: one person enrolled under two ids"
    ),
]
_ENROL = {
    **PHOTO_ERRORS,
    422: error(
        "bad field, unreadable image, or the photo failed the quality check "
        "(quality_check_failed / no_face_detected / face_too_small / multiple_faces; details.failed_checks)"
    ),
}


def face_out(record: FaceRecord) -> dict:
    return {
        "face_id": record.face_id,
        "subject_id": record.subject_id,
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
        "face": face_out(result.record),
    }


@router.post(
    "/insert",
    response_model=schemas.EnrollResponse,
    summary="Enrol a new face (409 if the id exists in the tenant)",
    responses={
        **_ENROL,
        409: error(
            "face_already_exists: the id is taken in this tenant; duplicate_face (dedup=true): the person is "
            "enrolled under another id; subject_face_limit"
        ),
    },
)
async def insert(
    id: FaceIdForm,
    tenant: TenantForm,
    image: ImageDep,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    subject_id: SubjectForm = None,
    dedup: DedupForm = False,
    aligned: AlignedForm = False,
):
    principal.scope(tenant)
    result = await service.enroll(
        tenant, id, image, subject_id=subject_id, replace=False, dedup=dedup, aligned=aligned, request_id=request_id
    )
    return _enrolled(request_id, "INSERT", result)


@router.post(
    "/upsert",
    response_model=schemas.EnrollResponse,
    summary="Enrol or replace a face (the previous image and vector are removed)",
    responses={**_ENROL, 409: error("duplicate_face (dedup=true), subject_face_limit")},
)
async def upsert(
    id: FaceIdForm,
    tenant: TenantForm,
    image: ImageDep,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    subject_id: SubjectForm = None,
    dedup: DedupForm = False,
    aligned: AlignedForm = False,
):
    principal.scope(tenant)
    result = await service.enroll(
        tenant, id, image, subject_id=subject_id, replace=True, dedup=dedup, aligned=aligned, request_id=request_id
    )
    return _enrolled(request_id, "UPSERT", result)


@router.post(
    "/search",
    response_model=schemas.SearchResponse,
    summary="1:N search in one tenant; a photo that fails the quality check gets no matches (and says why)",
    responses={**PHOTO_ERRORS, 422: error("bad field or unreadable image")},
)
async def search(
    tenant: TenantForm,
    image: ImageDep,
    service: FaceServiceDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    id: Annotated[str | None, Form(description="an identifier for this query, echoed", max_length=256)] = None,
    top_k: Annotated[int | None, Query(ge=1, le=schemas.TOP_K_MAX, description="1..100, default 5")] = None,
    threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="minimum cosine score, 0..1; default from settings")
    ] = None,
    group_by: Annotated[
        Literal["face", "subject"], Query(description="one match per face, or per subject with its best face")
    ] = "face",
    aligned: AlignedForm = False,
):
    principal.scope(tenant)
    top_k = top_k or settings.search_default_top_k
    threshold = settings.milvus_search_threshold if threshold is None else threshold
    outcome = await service.search(
        tenant, image, top_k=top_k, threshold=threshold, group_by=group_by, aligned=aligned, request_id=request_id
    )
    return {
        "requestId": request_id,
        "queryId": id,
        "imageQualityAssessment": outcome.analysis.assessment(),
        "searchResult": {
            "matches": [
                {"id": m.face_id, "subject_id": m.subject_id, "score": round(m.score, 6)} for m in outcome.matches
            ],
            "threshold": threshold,
            "top_k": top_k,
            "group_by": group_by,
            "model_id": outcome.analysis.model_id,
            "skipped_reason": outcome.skipped_reason,
        },
    }


@router.delete(
    "/delete",
    response_model=schemas.DeleteResponse,
    summary="Delete a face of a tenant: its vector and its image",
    responses={**COMMON_ERRORS, 404: error("face_not_found")},
)
async def delete(
    id: Annotated[str, Query(pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX, description=ID_DOC)],
    tenant: TenantQuery,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.scope(tenant)
    await service.delete(tenant, id)
    return {"requestId": request_id, "userOperationResult": {"operation": "DELETE", "status": "success"}}


@router.get(
    "/get/{face_id}",
    response_model=schemas.FaceResponse,
    summary="A face's record in a tenant",
    responses={**COMMON_ERRORS, 404: error("face_not_found")},
)
async def get(
    face_id: Annotated[str, Path(pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX, description=ID_DOC)],
    tenant: TenantQuery,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.scope(tenant)
    record = await service.get(tenant, face_id)
    return {"requestId": request_id, **face_out(record)}


@router.post(
    "/detect",
    response_model=schemas.DetectResponse,
    summary="Every face in the photo: box, landmarks, pose, quality (nothing is stored)",
    responses={**PHOTO_ERRORS, 422: error("bad field or unreadable image")},
)
async def detect(
    image: ImageDep,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    tenant: Annotated[
        str | None,
        Form(
            description="only for an s3:// image_url under the tenant's own images",
            pattern=schemas.ID_PATTERN,
            max_length=schemas.TENANT_MAX,
        ),
    ] = None,
):
    body = await service.detect(image, tenant=principal.scope(tenant), request_id=request_id)
    return {"requestId": request_id, **body}


async def _batch_sources(
    request: Request, files: list[UploadFile], images_b64: list[str], image_urls: list[str], count: int
) -> list[ImageSource]:
    """The items' photos, all sent in one of the three forms, one per id."""
    given = [
        name for name, values in (("files", files), ("images_b64", images_b64), ("image_urls", image_urls)) if values
    ]
    if len(given) != 1:
        raise AppError(422, "image_missing", "send the photos in exactly one of: files, images_b64, image_urls")
    name = given[0]
    sent = len(files or images_b64 or image_urls)
    if sent != count:
        raise AppError(422, "batch_mismatch", f"{count} ids but {sent} {name}: send one photo per id")
    if files:
        return [await read_upload(request, f, f"files[{i}]") for i, f in enumerate(files)]
    if images_b64:
        return [ImageSource(f"images_b64[{i}]", b64=v) for i, v in enumerate(images_b64)]
    return [ImageSource(f"image_urls[{i}]", url=v) for i, v in enumerate(image_urls)]


@router.post(
    "/batch/insert",
    response_model=schemas.BatchInsertResponse,
    summary="Enrol up to FACEAUTH_MAX_BATCH faces; each item succeeds or fails on its own",
    responses={
        400: error("empty_image (an empty file), or a body that cannot be parsed"),
        413: error("more items than FACEAUTH_MAX_BATCH (batch_too_large) or a request body that is too large"),
        422: error("ids and photos do not pair up, or a bad field"),
        503: error("the ML service is unavailable: nothing was written"),
    },
)
async def batch_insert(
    request: Request,
    tenant: TenantForm,
    ids: Annotated[list[str], Form(description="one id per photo, in the same order")],
    service: FaceServiceDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    files: Annotated[list[UploadFile], File(description="the photos, in the order of ids")] = [],  # noqa: B006
    images_b64: Annotated[list[str], Form(description="or: the photos as base64")] = [],  # noqa: B006
    image_urls: Annotated[list[str], Form(description="or: the photos' URLs")] = [],  # noqa: B006
    subject_ids: Annotated[
        list[str], Form(description="optional: one subject id per photo (empty string: the face id)")
    ] = [],  # noqa: B006
    upsert: Annotated[bool, Form(description="replace faces that exist instead of answering 409 for them")] = False,
    dedup: DedupForm = False,
    aligned: AlignedForm = False,
):
    principal.scope(tenant)
    if len(ids) > settings.max_batch:
        raise AppError(413, "batch_too_large", f"at most {settings.max_batch} photos per batch (FACEAUTH_MAX_BATCH)")
    if subject_ids and len(subject_ids) != len(ids):
        raise AppError(422, "batch_mismatch", f"{len(ids)} ids but {len(subject_ids)} subject_ids")
    _check_batch_ids(ids, subject_ids)
    sources = await _batch_sources(request, files, images_b64, image_urls, len(ids))
    items = [
        BatchItem(face_id, (subject_ids[i] if subject_ids else None) or None, source)
        for i, (face_id, source) in enumerate(zip(ids, sources, strict=True))
    ]
    outcomes = await service.batch_insert(
        tenant, items, replace=upsert, dedup=dedup, aligned=aligned, request_id=request_id
    )
    results = []
    for i, outcome in enumerate(outcomes):
        entry: dict = {"index": i, "id": outcome.face_id}
        if outcome.enrolment is not None:
            entry |= {
                "status": 200,
                "imageQualityAssessment": outcome.enrolment.analysis.assessment(),
                "face": face_out(outcome.enrolment.record),
            }
        else:
            error = outcome.error
            assert error is not None
            entry |= {
                "status": error.status,
                "error": {"code": error.code, "message": error.message, "details": error.details},
            }
        results.append(entry)
    succeeded = sum(r["status"] == 200 for r in results)
    return {"requestId": request_id, "succeeded": succeeded, "failed": len(results) - succeeded, "results": results}


def _check_batch_ids(ids: list[str], subject_ids: list[str]) -> None:
    """Form lists cannot carry per-item patterns in OpenAPI: check each id like the single routes do."""
    pattern = re.compile(schemas.ID_PATTERN)
    for name, values in (("ids", ids), ("subject_ids", [s for s in subject_ids if s])):
        for i, value in enumerate(values):
            if len(value) > schemas.FACE_ID_MAX or not pattern.fullmatch(value):
                raise AppError(
                    422,
                    "validation_error",
                    f"{name}[{i}] is not a valid id ({ID_DOC})",
                    details={"field": f"{name}[{i}]"},
                )


@router.get(
    "/image-url/{face_id}",
    response_model=schemas.ImageLinkResponse,
    summary="A short-lived link to the face's stored image (expires after FACEAUTH_IMAGE_LINK_SECONDS)",
    responses={**COMMON_ERRORS, 404: error("face_not_found, or image_not_stored (FACEAUTH_STORE_IMAGES=false)")},
)
async def image_url(
    request: Request,
    face_id: Annotated[str, Path(pattern=schemas.ID_PATTERN, max_length=schemas.FACE_ID_MAX, description=ID_DOC)],
    tenant: TenantQuery,
    service: FaceServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.scope(tenant)
    url, expires_at = await service.image_link(tenant, face_id, str(request.base_url))
    return {"requestId": request_id, "face_id": face_id, "url": url, "expires_at": iso_utc(expires_at * 1000)}
