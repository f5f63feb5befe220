"""/v1/subjects: a tenant's people, each with one or more faces. Listing, one subject, deleting one; fixing
identities (rename, merge, move a face)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from faceauth.contracts.ids import FACE_ID_MAX, ID_PATTERN
from faceauth.faces.schemas import FaceRecordOut
from faceauth.subjects import schemas
from faceauth.subjects.service import Subject, SubjectService
from faceauth.web.deps import ScopedTenantQuery, provided
from faceauth.web.params import COMMON_ERRORS, FaceIdQuery, SubjectIdPath, error

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


SubjectIdQuery = Annotated[str, Query(pattern=ID_PATTERN, max_length=FACE_ID_MAX, description="a subject id")]
_FIXING = {
    **COMMON_ERRORS,
    404: error("subject_not_found, face_not_found"),
    409: error("subject_exists (rename onto a subject with faces: merge instead), subject_face_limit"),
}


@router.post(
    "/{subject_id}/rename",
    response_model=schemas.SubjectResponse,
    summary="Rename a subject: every face moves to a new subject id",
    responses=_FIXING,
)
async def rename_subject(
    subject_id: SubjectIdPath, tenant: ScopedTenantQuery, new_subject_id: SubjectIdQuery, service: SubjectServiceDep
):
    return schemas.SubjectResponse(**_subject_out(await service.rename(tenant, subject_id, new_subject_id)))


@router.post(
    "/{subject_id}/merge",
    response_model=schemas.SubjectResponse,
    summary="Merge a subject into another: its faces move there (the answer is the merged subject)",
    responses=_FIXING,
)
async def merge_subject(
    subject_id: SubjectIdPath, tenant: ScopedTenantQuery, into: SubjectIdQuery, service: SubjectServiceDep
):
    return schemas.SubjectResponse(**_subject_out(await service.merge(tenant, subject_id, into)))


@router.post(
    "/{subject_id}/move-face",
    response_model=schemas.SubjectResponse,
    summary="Move one face (of any subject of the tenant) to this subject",
    responses=_FIXING,
)
async def move_face(
    subject_id: SubjectIdPath, tenant: ScopedTenantQuery, face_id: FaceIdQuery, service: SubjectServiceDep
):
    await service.move_face(tenant, face_id, subject_id)
    return schemas.SubjectResponse(**_subject_out(await service.get(tenant, subject_id)))
