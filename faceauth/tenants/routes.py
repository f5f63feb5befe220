"""/v1/tenants: whole-tenant operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

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
    summary="Purge a tenant (right to erasure): its API keys, every vector, every image and its drop-area photos "
    "go; counts what was deleted. Admin key only",
    responses={503: error("a store is unavailable: retry to finish (the purge is idempotent)")},
)
async def purge_tenant(
    _: AdminDep,
    tenant: TenantPath,
    service: TenantServiceDep,
    keep_keys: Annotated[
        bool, Query(description="keep the tenant's API keys (default: they are revoked first, before any delete)")
    ] = False,
):
    report = await service.purge(tenant, keep_keys=keep_keys)
    counts = schemas.PurgeCounts(
        faces=report.faces,
        vectors=report.vectors,
        images=report.images,
        uploads=report.uploads,
        keys_revoked=report.keys_revoked,
    )
    return schemas.PurgeResponse(tenant=tenant, deleted=counts)
