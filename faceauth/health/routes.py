"""/healthz (the process answers) and /readyz (Milvus, the object store and the ML service answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from faceauth.health import schemas
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
    summary="Readiness: Milvus, the object store and the ML service; says which one is down",
    responses={503: {"model": schemas.ReadyResponse, "description": "a dependency is down"}},
)
async def readyz(service: HealthServiceDep, response: Response):
    found = await service.readiness()
    response.status_code = 200 if found.ready else 503
    return schemas.ReadyResponse(
        status="ok" if found.ready else "unavailable",
        checks=found.checks,
        model_id=found.model_id,
        warnings=found.warnings,
    )
