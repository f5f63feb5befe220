"""/v1/keys: create, list and revoke API keys (admin keys only); /v1/caller: the caller's own key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from faceauth.apikeys import schemas
from faceauth.apikeys.service import KeyService
from faceauth.auth.keys import ApiKey
from faceauth.web.deps import AdminDep, PrincipalDep, provided
from faceauth.web.params import error

router = APIRouter(prefix="/v1/keys", tags=["keys"])
# Outside /v1/keys: a fixed name there would share a path with /v1/keys/{key_id}.
caller_router = APIRouter(tags=["keys"])

KeyServiceDep = Annotated[KeyService, Depends(provided(KeyService))]
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}([0-9a-f]{16})?$", description="the key id, after fa_")]


def _out(key: ApiKey) -> dict:
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "admin": key.admin,
        "name": key.name,
        "created_at_ms": key.created_at_ms,
        "revoked_at_ms": key.revoked_at_ms,
        "active": key.active,
    }


@router.get("", response_model=schemas.KeyListResponse, summary="Every API key (no secrets). Admin key only")
async def list_keys(_: AdminDep, service: KeyServiceDep):
    return schemas.KeyListResponse(keys=[schemas.KeyOut(**_out(k)) for k in await service.list()])


@router.post(
    "",
    status_code=201,
    response_model=schemas.KeyCreatedResponse,
    summary="Create an API key for a tenant (or an admin key); the key is in this answer only. Admin key only",
    responses={400: error("a body that is not JSON"), 422: error("a bad tenant or name")},
)
async def create_key(body: schemas.KeyCreate, _: AdminDep, service: KeyServiceDep):
    key, token = await service.create(body.tenant, body.name)
    return schemas.KeyCreatedResponse(key=token, **_out(key))


@router.delete(
    "/{key_id}",
    response_model=schemas.KeyResponse,
    summary="Revoke an API key (within ~10 s on every replica). Admin key only",
    responses={404: error("key_not_found"), 409: error("cannot_revoke_own_key")},
)
async def revoke_key(key_id: KeyIdPath, principal: AdminDep, service: KeyServiceDep):
    key = await service.revoke(key_id, caller_key_id=principal.key_id)
    return schemas.KeyResponse(**_out(key))


@caller_router.get(
    "/v1/caller", response_model=schemas.CallerResponse, summary="The key making this request: its tenant"
)
async def caller(principal: PrincipalDep):
    return schemas.CallerResponse(key_id=principal.key_id, tenant=principal.tenant, admin=principal.admin)
