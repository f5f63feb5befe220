"""/healthz (the process answers) and /readyz (Milvus, the object store and the ML service answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from faceauth.health import schemas
from faceauth.health.schemas import DependencyState
from faceauth.health.service import HealthService
from faceauth.web.deps import provided

router = APIRouter(tags=["health"])

HealthServiceDep = Annotated[HealthService, Depends(provided(HealthService))]


@router.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness: the process answers")
async def healthz():
    return schemas.HealthResponse()


@router.get(
    "/readyz",
    response_model=schemas.ReadyResponse,
    summary="Readiness: Milvus, the object store and the ML service; says which one is down (why: admin keys "
    "only). Cached for 1.5 s",
    responses={503: {"model": schemas.ReadyResponse, "description": "a dependency is down"}},
)
async def readyz(service: HealthServiceDep, request: Request, response: Response):
    found = await service.readiness()
    response.status_code = 200 if found.ready else 503
    # Open to probes, so it names no host and no exception text: those (and the model-mix warnings) go to
    # callers with an admin key only (or everybody when keys are off, FACEAUTH_AUTH_DISABLED).
    principal = request.scope.get("state", {}).get("principal")
    if principal is not None and principal.admin:
        checks = found.checks
        warnings = found.warnings + await service.model_mix_warnings(found)
    else:
        checks = {name: DependencyState(status=state.status) for name, state in found.checks.items()}
        warnings = []
    return schemas.ReadyResponse(
        status="ok" if found.ready else "unavailable", checks=checks, model_id=found.model_id, warnings=warnings
    )
