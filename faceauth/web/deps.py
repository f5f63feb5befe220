"""Typed dependency aliases the domains' routes share: the caller, the tenant it may act on, settings, services.

Dependencies are `async def` even when they only read state: FastAPI runs a plain `def` dependency in a worker
thread, a thread hop per dependency per request for a dictionary lookup.

No `from __future__ import annotations` here: `optional_tenant_form` builds a parameter's annotation from its
argument, which FastAPI could not resolve from a string.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Form, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from faceauth.auth.principal import Principal
from faceauth.config import APISettings
from faceauth.contracts.ids import ID_PATTERN, TENANT_DOC, TENANT_MAX
from faceauth.kit.errors import AppError
from faceauth.web.params import AlignedForm, TenantForm, TenantQuery

T = TypeVar("T")


def provided(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency that gives the app's one instance of `kind` (the composition root registers each service by
    its class in `app.state.services`)."""

    async def get(request: Request) -> T:
        return request.app.state.services[kind]

    get.__name__ = f"provide_{kind.__name__}"
    return get


async def _settings(request: Request) -> APISettings:
    return request.app.state.settings


# Declared for the OpenAPI document (Swagger's "Authorize"); the key itself is checked by AuthMiddleware before
# the body is read.
_api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, description="fa_... (or Authorization: Bearer fa_...)")
_bearer = HTTPBearer(auto_error=False)


async def _principal(
    request: Request, api_key: str | None = Security(_api_key), bearer: object = Security(_bearer)
) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:  # a route outside AuthMiddleware's reach: refuse rather than guess
        raise AppError(401, "unauthorized", "send an API key (X-Api-Key or Authorization: Bearer)")
    return principal


SettingsDep = Annotated[APISettings, Depends(_settings)]
PrincipalDep = Annotated[Principal, Depends(_principal)]


# -- the tenant a request acts on, checked against the caller's key before anything is read ------------------
# A tenant key may act on its own tenant only (403 otherwise, the same answer whether or not anything exists
# there); an admin key on any. Routes take one of these instead of the raw field.


async def _tenant_form(principal: PrincipalDep, tenant: TenantForm = None) -> str:
    return _implied(principal, tenant)


async def _tenant_query(principal: PrincipalDep, tenant: TenantQuery = None) -> str:
    return _implied(principal, tenant)


def _implied(principal: Principal, tenant: str | None) -> str:
    """A tenant key implies its tenant; only an admin key acting for a tenant has to name it."""
    scoped = principal.scope(tenant)
    if scoped is None:
        raise AppError(
            422,
            "validation_error",
            "an admin API key must name the tenant it acts for (tenant=)",
            details={"field": "tenant"},
        )
    return scoped


async def _caller_tenant(principal: PrincipalDep) -> str | None:
    return principal.scope(None)


async def _admin(principal: PrincipalDep) -> Principal:
    principal.require_admin()
    return principal


def optional_tenant_form(description: str) -> Any:
    """A dependency for an optional `tenant` form field: the named tenant (checked), else the key's own tenant,
    else None (an admin key naming none)."""

    async def scoped(
        principal: PrincipalDep,
        tenant: Annotated[
            str | None, Form(description=f"{TENANT_DOC}; {description}", pattern=ID_PATTERN, max_length=TENANT_MAX)
        ] = None,
    ) -> str | None:
        return principal.scope(tenant)

    return Depends(scoped)


# The `tenant` form field / query parameter, allowed for the caller's key.
ScopedTenantForm = Annotated[str, Depends(_tenant_form)]
ScopedTenantQuery = Annotated[str, Depends(_tenant_query)]
# Routes that name no tenant: the key's own (None for an admin key).
CallerTenant = Annotated[str | None, Depends(_caller_tenant)]
# Tenant-wide operations (purge) need an admin key.
AdminDep = Annotated[Principal, Depends(_admin)]


async def _aligned(principal: PrincipalDep, settings: SettingsDep, aligned: AlignedForm = False) -> bool:
    """aligned=true, once the caller may send it: it skips anti-spoofing, so it is an admin's decision."""
    if aligned:
        principal.allow_aligned_photos(tenant_allows=principal.tenant in settings.aligned_tenant_set)
    return aligned


AllowedAlignedForm = Annotated[bool, Depends(_aligned)]
