"""/v1/faces: enrol (one or a batch), search, detect, get, delete, image links. Thin: parse, call the service,
shape the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile

from faceauth.contracts.ids import FACE_ID_MAX, ID_DOC, ID_PATTERN, TOP_K_MAX, is_valid_id
from faceauth.faces import schemas
from faceauth.faces.service import BatchItem, Enrolment, FaceService
from faceauth.kit.errors import AppError
from faceauth.photos.deps import PhotoDep, batch_photos
from faceauth.web.deps import (
    PrincipalDep,
    ScopedTenantForm,
    ScopedTenantQuery,
    SettingsDep,
    optional_tenant_form,
    provided,
)
from faceauth.web.params import COMMON_ERRORS, PHOTO_ERRORS, AlignedForm, FaceIdForm, FaceIdPath, FaceIdQuery, error

router = APIRouter(prefix="/v1/faces", tags=["faces"])

FaceServiceDep = Annotated[FaceService, Depends(provided(FaceService))]
SubjectForm = Annotated[
    str | None,
    Form(
        description="the person this face belongs to (several faces may share it); default: the face id",
        pattern=ID_PATTERN,
        max_length=FACE_ID_MAX,
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


def _enrolled(operation: Literal["INSERT", "UPSERT"], result: Enrolment) -> schemas.EnrollResponse:
    return schemas.EnrollResponse(
        imageQualityAssessment=result.analysis.assessment(),
        userOperationResult=schemas.UserOperationResult(operation=operation),
        face=schemas.FaceRecordOut.of(result.record),
    )


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
    tenant: ScopedTenantForm,
    photo: PhotoDep,
    service: FaceServiceDep,
    subject_id: SubjectForm = None,
    dedup: DedupForm = False,
    aligned: AlignedForm = False,
):
    result = await service.enroll(tenant, id, photo, subject_id=subject_id, replace=False, dedup=dedup, aligned=aligned)
    return _enrolled("INSERT", result)


@router.post(
    "/upsert",
    response_model=schemas.EnrollResponse,
    summary="Enrol or replace a face (the previous image and vector are removed)",
    responses={**_ENROL, 409: error("duplicate_face (dedup=true), subject_face_limit")},
)
async def upsert(
    id: FaceIdForm,
    tenant: ScopedTenantForm,
    photo: PhotoDep,
    service: FaceServiceDep,
    subject_id: SubjectForm = None,
    dedup: DedupForm = False,
    aligned: AlignedForm = False,
):
    result = await service.enroll(tenant, id, photo, subject_id=subject_id, replace=True, dedup=dedup, aligned=aligned)
    return _enrolled("UPSERT", result)


@router.post(
    "/search",
    response_model=schemas.SearchResponse,
    summary="1:N search in one tenant; a photo that fails the quality check gets no matches (and says why)",
    responses={**PHOTO_ERRORS, 422: error("bad field or unreadable image")},
)
async def search(
    tenant: ScopedTenantForm,
    photo: PhotoDep,
    service: FaceServiceDep,
    settings: SettingsDep,
    id: Annotated[str | None, Form(description="an identifier for this query, echoed", max_length=256)] = None,
    top_k: Annotated[int | None, Query(ge=1, le=TOP_K_MAX, description="1..100, default 5")] = None,
    threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="minimum cosine score, 0..1; default from settings")
    ] = None,
    group_by: Annotated[
        Literal["face", "subject"], Query(description="one match per face, or per subject with its best face")
    ] = "face",
    aligned: AlignedForm = False,
):
    top_k = top_k or settings.search_default_top_k
    threshold = settings.milvus_search_threshold if threshold is None else threshold
    outcome = await service.search(tenant, photo, top_k=top_k, threshold=threshold, group_by=group_by, aligned=aligned)
    return schemas.SearchResponse(
        queryId=id,
        imageQualityAssessment=outcome.analysis.assessment(),
        searchResult=schemas.SearchResult(
            matches=[schemas.Match.of(m) for m in outcome.matches],
            threshold=threshold,
            top_k=top_k,
            group_by=group_by,
            model_id=outcome.analysis.model_id,
            skipped_reason=outcome.skipped_reason,
        ),
    )


@router.post(
    "/recognize",
    response_model=schemas.RecognizeResponse,
    summary="Every face of a photo, largest first, each with its best matches in the tenant",
    responses={**PHOTO_ERRORS, 422: error("bad field or unreadable image")},
)
async def recognize(
    tenant: ScopedTenantForm,
    photo: PhotoDep,
    service: FaceServiceDep,
    settings: SettingsDep,
    top_k: Annotated[int | None, Query(ge=1, le=TOP_K_MAX, description="matches per face, 1..100, default 5")] = None,
    threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="minimum cosine score, 0..1; default from settings")
    ] = None,
    group_by: Annotated[
        Literal["face", "subject"], Query(description="one match per face, or per subject with its best face")
    ] = "face",
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many faces, largest first")] = 20,
):
    top_k = top_k or settings.search_default_top_k
    threshold = settings.milvus_search_threshold if threshold is None else threshold
    outcome = await service.recognize(tenant, photo, top_k=top_k, threshold=threshold, group_by=group_by, limit=limit)
    return schemas.RecognizeResponse(
        imageQualityAssessment=outcome.analysis.assessment(),
        recognizeResult=schemas.RecognizeResult(
            faces=[
                schemas.RecognizedFace(
                    box=found.face.face.box,
                    face=found.face.face,
                    quality=schemas.FaceQuality(
                        passed=found.face.passed,
                        reasons=found.face.reasons,
                        spoof=found.face.spoof,
                        blur=found.face.blur,
                    ),
                    matches=[schemas.Match.of(m) for m in found.matches],
                    skipped_reason=found.skipped_reason,
                )
                for found in outcome.faces
            ],
            faces_count=outcome.analysis.faces_count,
            threshold=threshold,
            top_k=top_k,
            group_by=group_by,
            model_id=outcome.analysis.model_id,
        ),
    )


# The JSON bodies, once their tenant is one the caller's key may act on (checked before any work).
async def _by_face(body: schemas.SearchByFaceRequest, principal: PrincipalDep) -> schemas.SearchByFaceRequest:
    principal.allow(body.tenant)
    return body


async def _by_embedding(
    body: schemas.SearchByEmbeddingRequest, principal: PrincipalDep
) -> schemas.SearchByEmbeddingRequest:
    principal.allow(body.tenant)
    return body


async def _delete_many(body: schemas.DeleteManyRequest, principal: PrincipalDep) -> schemas.DeleteManyRequest:
    principal.allow(body.tenant)
    return body


_JSON_BODY = {400: error("bad_request: the body cannot be parsed (not UTF-8 JSON)")}


def _search_answer(settings, body, model_id: str, matches) -> schemas.SearchByResponse:
    return schemas.SearchByResponse(
        searchResult=schemas.SearchResult(
            matches=[schemas.Match.of(m) for m in matches],
            threshold=settings.milvus_search_threshold if body.threshold is None else body.threshold,
            top_k=body.top_k or settings.search_default_top_k,
            group_by=body.group_by,
            model_id=model_id,
        )
    )


@router.post(
    "/search/by-face",
    response_model=schemas.SearchByResponse,
    summary="1:N search with a stored face's vector: the person's other enrolments, or possible duplicates",
    responses={**COMMON_ERRORS, **_JSON_BODY, 404: error("face_not_found")},
)
async def search_by_face(
    body: Annotated[schemas.SearchByFaceRequest, Depends(_by_face)],
    service: FaceServiceDep,
    settings: SettingsDep,
):
    model_id, matches = await service.search_by_face(
        body.tenant,
        body.face_id,
        top_k=body.top_k or settings.search_default_top_k,
        threshold=settings.milvus_search_threshold if body.threshold is None else body.threshold,
        group_by=body.group_by,
    )
    return _search_answer(settings, body, model_id, matches)


@router.post(
    "/search/by-embedding",
    response_model=schemas.SearchByResponse,
    summary="1:N search with a given embedding of the model's dimension",
    responses={
        **COMMON_ERRORS,
        **_JSON_BODY,
        422: error("invalid_embedding: not FACEAUTH_MILVUS_EMBEDDING_DIM finite numbers"),
    },
)
async def search_by_embedding(
    body: Annotated[schemas.SearchByEmbeddingRequest, Depends(_by_embedding)],
    service: FaceServiceDep,
    settings: SettingsDep,
):
    model_id, matches = await service.search_by_embedding(
        body.tenant,
        body.embedding,
        model_id=body.model_id,
        top_k=body.top_k or settings.search_default_top_k,
        threshold=settings.milvus_search_threshold if body.threshold is None else body.threshold,
        group_by=body.group_by,
    )
    return _search_answer(settings, body, model_id, matches)


@router.post(
    "/delete-many",
    response_model=schemas.DeleteManyResponse,
    summary="Delete a list of faces of a tenant; ids it does not have are reported, not failed",
    responses={**COMMON_ERRORS, **_JSON_BODY, 413: error("batch_too_large: more ids than FACEAUTH_MAX_BATCH")},
)
async def delete_many(
    body: Annotated[schemas.DeleteManyRequest, Depends(_delete_many)],
    service: FaceServiceDep,
    settings: SettingsDep,
):
    if len(body.ids) > settings.max_batch:
        raise AppError(413, "batch_too_large", f"at most {settings.max_batch} ids per call (FACEAUTH_MAX_BATCH)")
    deleted, not_found = await service.delete_many(body.tenant, body.ids)
    return schemas.DeleteManyResponse(deleted=deleted, not_found=not_found)


@router.delete(
    "/delete",
    response_model=schemas.DeleteResponse,
    summary="Delete a face of a tenant: its vector and its image",
    responses={**COMMON_ERRORS, 404: error("face_not_found")},
)
async def delete(id: FaceIdQuery, tenant: ScopedTenantQuery, service: FaceServiceDep):
    await service.delete(tenant, id)
    return schemas.DeleteResponse(userOperationResult=schemas.UserOperationResult(operation="DELETE"))


@router.get(
    "/get/{face_id}",
    response_model=schemas.FaceResponse,
    summary="A face's record in a tenant",
    responses={**COMMON_ERRORS, 404: error("face_not_found")},
)
async def get(face_id: FaceIdPath, tenant: ScopedTenantQuery, service: FaceServiceDep):
    record = await service.get(tenant, face_id)
    return schemas.FaceResponse(**schemas.FaceRecordOut.of(record).model_dump())


@router.post(
    "/detect",
    response_model=schemas.DetectResponse,
    summary="Every face in the photo: box, landmarks, pose, quality (nothing is stored)",
    responses={**PHOTO_ERRORS, 422: error("bad field or unreadable image")},
)
async def detect(
    photo: PhotoDep,
    service: FaceServiceDep,
    tenant: Annotated[str | None, optional_tenant_form("only for an s3:// image_url under the tenant's own images")],
    faces: Annotated[
        Literal["largest", "all"], Query(description="all (default): every face; largest: the largest face only")
    ] = "all",
):
    return schemas.DetectResponse(**await service.detect(photo, tenant=tenant, every_face=faces == "all"))


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
    tenant: ScopedTenantForm,
    ids: Annotated[list[str], Form(description="one id per photo, in the same order")],
    service: FaceServiceDep,
    settings: SettingsDep,
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
    if len(ids) > settings.max_batch:
        raise AppError(413, "batch_too_large", f"at most {settings.max_batch} photos per batch (FACEAUTH_MAX_BATCH)")
    if subject_ids and len(subject_ids) != len(ids):
        raise AppError(422, "batch_mismatch", f"{len(ids)} ids but {len(subject_ids)} subject_ids")
    _check_batch_ids(ids, subject_ids)
    photos = await batch_photos(settings.max_image_bytes, files, images_b64, image_urls, len(ids))
    items = [
        BatchItem(face_id, (subject_ids[i] if subject_ids else None) or None, photo)
        for i, (face_id, photo) in enumerate(zip(ids, photos, strict=True))
    ]
    outcomes = await service.batch_insert(tenant, items, replace=upsert, dedup=dedup, aligned=aligned)
    results = [
        schemas.BatchItemResult(
            index=i,
            id=outcome.face_id,
            status=200,
            imageQualityAssessment=outcome.enrolment.analysis.assessment(),
            face=schemas.FaceRecordOut.of(outcome.enrolment.record),
        )
        if outcome.enrolment is not None
        else schemas.BatchItemResult.failed(i, outcome.face_id, outcome.error)  # type: ignore[arg-type]
        for i, outcome in enumerate(outcomes)
    ]
    succeeded = sum(r.status == 200 for r in results)
    return schemas.BatchInsertResponse(succeeded=succeeded, failed=len(results) - succeeded, results=results)


def _check_batch_ids(ids: list[str], subject_ids: list[str]) -> None:
    """Form lists cannot carry per-item patterns in OpenAPI: check each id like the single routes do."""
    for name, values in (("ids", ids), ("subject_ids", [s for s in subject_ids if s])):
        for i, value in enumerate(values):
            if not is_valid_id(value):
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
async def image_url(request: Request, face_id: FaceIdPath, tenant: ScopedTenantQuery, service: FaceServiceDep):
    url, expires_at = await service.image_link(tenant, face_id, str(request.base_url))
    return schemas.ImageLinkResponse(face_id=face_id, url=url, expires_at=schemas.iso_utc(expires_at * 1000))
