"""/v1/faces/cluster: DBSCAN (cosine) over a tenant's faces or over given embeddings."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from faceauth.clustering import schemas
from faceauth.clustering.service import ClusterService
from faceauth.kit.errors import AppError
from faceauth.web.deps import PrincipalDep, provided
from faceauth.web.params import error

router = APIRouter(prefix="/v1/faces", tags=["faces"])

ClusterServiceDep = Annotated[ClusterService, Depends(provided(ClusterService))]


def _parse(raw: bytes) -> schemas.ClusterRequest:
    return schemas.ClusterRequest.model_validate_json(raw.decode("utf-8"))


async def _request_body(request: Request) -> schemas.ClusterRequest:
    """The JSON body, parsed and validated in a worker thread: it may be tens of MB of numbers, and parsing it on
    the event loop would stall every other request meanwhile."""
    raw = await request.body()
    try:
        return await asyncio.to_thread(_parse, raw)
    except UnicodeDecodeError:
        raise AppError(400, "bad_request", "the body is not UTF-8 JSON") from None
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


async def _scoped_request(
    body: Annotated[schemas.ClusterRequest, Depends(_request_body)], principal: PrincipalDep
) -> schemas.ClusterRequest:
    """The request, once its tenant (in the JSON body) is one the caller's key may act on; a tenant key naming
    neither a tenant nor embeddings clusters its own tenant."""
    if body.tenant is None and body.embeddings is None and principal.tenant is not None:
        body = body.model_copy(update={"tenant": principal.tenant})
    if (body.tenant is None) == (body.embeddings is None):
        raise AppError(422, "validation_error", "give exactly one of tenant (its faces) or embeddings")
    if body.tenant is not None:
        principal.allow(body.tenant)
    return body


@router.post(
    "/cluster",
    # The body is parsed by _request_body (off the event loop): documented here, as FastAPI would.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.ClusterRequest.model_json_schema()}},
        }
    },
    response_model=schemas.ClusterResponse,
    summary="Group faces by person: DBSCAN with the cosine metric over a tenant's faces or given embeddings",
    responses={
        400: error("bad_request: the body cannot be parsed (not UTF-8 JSON)"),
        413: error("too_many_faces: more than FACEAUTH_CLUSTER_MAX_FACES (FACEAUTH_CLUSTER_MAX_EMBEDDINGS given)"),
        422: error("bad field (give exactly one of tenant / embeddings; the model's dimension), or too_dense"),
        429: error("cluster_busy: this key has a clustering request running"),
        503: error("Milvus or the ML service is unavailable"),
    },
)
async def cluster(
    body: Annotated[schemas.ClusterRequest, Depends(_scoped_request)],
    principal: PrincipalDep,
    service: ClusterServiceDep,
):
    async with service.one_job(principal.key_id):
        result = await _clustering(body, service)
    return schemas.ClusterResponse(
        clusters=[schemas.Cluster(label=i, size=len(ids), ids=ids) for i, ids in enumerate(result.clusters)],
        noise=result.noise,
        eps=body.eps,
        min_samples=body.min_samples,
        model_id=result.model_id,
    )


async def _clustering(body: schemas.ClusterRequest, service: ClusterService):
    if body.tenant is not None:
        return await service.cluster_tenant(body.tenant, eps=body.eps, min_samples=body.min_samples)
    return await service.cluster_embeddings(body.embeddings or [], body.ids, eps=body.eps, min_samples=body.min_samples)
