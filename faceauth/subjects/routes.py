"""/v1/subjects: a tenant's people, each with one or more faces. Listing, one subject, deleting one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from faceauth.api.deps import PrincipalDep, RequestIdDep, SubjectServiceDep
from faceauth.api.params import COMMON_ERRORS, TenantQuery, error
from faceauth.faces.routes import face_out
from faceauth.faces.schemas import FACE_ID_MAX, ID_PATTERN
from faceauth.subjects import schemas
from faceauth.subjects.service import Subject

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

SubjectPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=FACE_ID_MAX, description="the subject id")]


def _subject_out(subject: Subject) -> dict:
    return {"subject_id": subject.subject_id, "faces": [face_out(f) for f in subject.faces]}


@router.get(
    "",
    response_model=schemas.SubjectPageResponse,
    summary="A tenant's subjects and their faces, a page at a time (cursor pagination)",
    responses={**COMMON_ERRORS, 422: error("bad field or invalid_cursor")},
)
async def list_subjects(
    tenant: TenantQuery,
    service: SubjectServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500, description="subjects per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
):
    principal.scope(tenant)
    page = await service.list(tenant, cursor=cursor, limit=limit)
    return {
        "requestId": request_id,
        "subjects": [_subject_out(s) for s in page.subjects],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/{subject_id}",
    response_model=schemas.SubjectResponse,
    summary="One subject and its faces",
    responses={**COMMON_ERRORS, 404: error("subject_not_found")},
)
async def get_subject(
    subject_id: SubjectPath,
    tenant: TenantQuery,
    service: SubjectServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.scope(tenant)
    return {"requestId": request_id, **_subject_out(await service.get(tenant, subject_id))}


@router.delete(
    "/{subject_id}",
    response_model=schemas.SubjectDeleteResponse,
    summary="Delete a subject with all its faces (vectors and images)",
    responses={**COMMON_ERRORS, 404: error("subject_not_found")},
)
async def delete_subject(
    subject_id: SubjectPath,
    tenant: TenantQuery,
    service: SubjectServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.scope(tenant)
    deleted = await service.delete(tenant, subject_id)
    return {"requestId": request_id, "subject_id": subject_id, "deleted_faces": deleted}
