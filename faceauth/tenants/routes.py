"""/v1/tenants: whole-tenant operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from faceauth.tenants import schemas
from faceauth.tenants.service import TenantService
from faceauth.web.deps import AdminDep, CallerTenant, provided
from faceauth.web.params import TenantPath, error

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantServiceDep = Annotated[TenantService, Depends(provided(TenantService))]


@router.get(
    "",
    response_model=schemas.TenantListResponse,
    summary="Tenants and their face and subject counts: every tenant for an admin key, its own for a tenant key",
    responses={503: error("the vector store is unavailable")},
)
async def list_tenants(tenant: CallerTenant, service: TenantServiceDep):
    counts = await service.counts(tenant)
    return schemas.TenantListResponse(
        tenants=[schemas.TenantCountOut(tenant=c.tenant, faces=c.faces, subjects=c.subjects) for c in counts.tenants],
        complete=counts.complete,
    )


@router.delete(
    "/{tenant}",
    response_model=schemas.PurgeResponse,
    summary="Purge a tenant (right to erasure): every vector and every image goes; counts what was deleted. "
    "Admin key only",
    responses={503: error("a store is unavailable: retry to finish (the purge is idempotent)")},
)
async def purge_tenant(_: AdminDep, tenant: TenantPath, service: TenantServiceDep):
    report = await service.purge(tenant)
    counts = schemas.PurgeCounts(faces=report.faces, vectors=report.vectors, images=report.images)
    return schemas.PurgeResponse(tenant=tenant, deleted=counts)
