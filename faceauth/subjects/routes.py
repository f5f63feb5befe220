"""/v1/subjects: a tenant's people, each with one or more faces. Listing, one subject, deleting one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from faceauth.faces.schemas import FaceRecordOut
from faceauth.subjects import schemas
from faceauth.subjects.service import Subject, SubjectService
from faceauth.web.deps import ScopedTenantQuery, provided
from faceauth.web.params import COMMON_ERRORS, SubjectIdPath, error

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

SubjectServiceDep = Annotated[SubjectService, Depends(provided(SubjectService))]


def _subject_out(subject: Subject) -> dict:
    return {"subject_id": subject.subject_id, "faces": [FaceRecordOut.of(f) for f in subject.faces]}


@router.get(
    "",
    response_model=schemas.SubjectPageResponse,
    summary="A tenant's subjects and their faces, a page at a time (cursor pagination)",
    responses={**COMMON_ERRORS, 422: error("bad field or invalid_cursor")},
)
async def list_subjects(
    tenant: ScopedTenantQuery,
    service: SubjectServiceDep,
    limit: Annotated[int, Query(ge=1, le=500, description="subjects per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
):
    page = await service.list(tenant, cursor=cursor, limit=limit)
    return schemas.SubjectPageResponse(
        subjects=[schemas.SubjectOut(**_subject_out(s)) for s in page.subjects], next_cursor=page.next_cursor
    )


@router.get(
    "/{subject_id}",
    response_model=schemas.SubjectResponse,
    summary="One subject and its faces",
    responses={**COMMON_ERRORS, 404: error("subject_not_found")},
)
async def get_subject(subject_id: SubjectIdPath, tenant: ScopedTenantQuery, service: SubjectServiceDep):
    subject = await service.get(tenant, subject_id)
    return schemas.SubjectResponse(**_subject_out(subject))


@router.delete(
    "/{subject_id}",
    response_model=schemas.SubjectDeleteResponse,
    summary="Delete a subject with all its faces (vectors and images)",
    responses={**COMMON_ERRORS, 404: error("subject_not_found")},
)
async def delete_subject(subject_id: SubjectIdPath, tenant: ScopedTenantQuery, service: SubjectServiceDep):
    deleted = await service.delete(tenant, subject_id)
    return schemas.SubjectDeleteResponse(subject_id=subject_id, deleted_faces=deleted)
