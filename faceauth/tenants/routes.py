"""/v1/tenants: whole-tenant operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from faceauth.api.deps import PrincipalDep, RequestIdDep, TenantServiceDep
from faceauth.api.params import TENANT_DOC, error
from faceauth.faces.schemas import ID_PATTERN, TENANT_MAX
from faceauth.tenants import schemas

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


@router.delete(
    "/{tenant}",
    response_model=schemas.PurgeResponse,
    summary="Purge a tenant (right to erasure): every vector and every image goes; counts what was deleted. "
    "Admin key only",
    responses={503: error("a store is unavailable: retry to finish (the purge is idempotent)")},
)
async def purge_tenant(
    tenant: Annotated[str, Path(pattern=ID_PATTERN, max_length=TENANT_MAX, description=TENANT_DOC)],
    service: TenantServiceDep,
    request_id: RequestIdDep,
    principal: PrincipalDep,
):
    principal.require_admin()
    report = await service.purge(tenant)
    return {
        "requestId": request_id,
        "tenant": tenant,
        "deleted": {"faces": report.faces, "vectors": report.vectors, "images": report.images},
    }
