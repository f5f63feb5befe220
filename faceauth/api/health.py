"""/healthz (the process answers) and /readyz (Milvus, the object store and the ML service answer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from faceauth.api.deps import FaceServiceDep, RequestIdDep
from faceauth.faces import schemas

router = APIRouter(tags=["health"])

# A dependency that takes longer than this to answer a ping counts as down for readiness.
_CHECK_TIMEOUT_S = 5.0


async def _check(probe: Callable[[], Awaitable[Any]]) -> tuple[dict, Any]:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(probe(), _CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"status": "down", "detail": f"no answer within {_CHECK_TIMEOUT_S:.0f} s"}, None
    except Exception as exc:  # any failure means "not ready"; the detail says which and why
        return {"status": "down", "detail": str(exc)[:300]}, None
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}, result


@router.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness: the process answers")
async def healthz(request_id: RequestIdDep):
    return {"requestId": request_id, "status": "ok"}


@router.get(
    "/readyz",
    response_model=schemas.ReadyResponse,
    summary="Readiness: Milvus, the object store and the ML service; says which one is down",
    responses={503: {"model": schemas.ReadyResponse, "description": "a dependency is down"}},
)
async def readyz(request: Request, service: FaceServiceDep, request_id: RequestIdDep):
    (milvus, _), (objects, _), (ml, ml_body) = await asyncio.gather(
        _check(service.index.ping), _check(service.objects.ping), _check(service.ml.ready)
    )
    warnings: list[str] = []
    model_id = ((ml_body or {}).get("models", {}).get("embedder") or {}).get("model_id")
    if model_id and milvus["status"] == "ok":
        try:
            others = await service.index.other_model_ids(model_id)
        except Exception as exc:  # readiness must answer even if this extra query fails
            others = []
            warnings.append(f"could not list the collection's embedding models: {exc}")
        if others:
            warnings.append(
                f"the collection holds vectors of other embedding models ({', '.join(sorted(others))}); search "
                f"compares only {model_id}: re-embed the stored images (docs/OPERATIONS.md)"
            )
    checks = {"milvus": milvus, "object_store": objects, "ml_service": ml}
    ready = all(c["status"] == "ok" for c in checks.values())
    body = {
        "requestId": request_id,
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        "model_id": model_id,
        "warnings": warnings,
    }
    return JSONResponse(body, status_code=200 if ready else 503)
