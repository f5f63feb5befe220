"""/v1/faces/cluster: DBSCAN (cosine) over a tenant's faces or over given embeddings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from faceauth.clustering import schemas
from faceauth.clustering.service import ClusterService
from faceauth.kit.errors import AppError
from faceauth.web.deps import PrincipalDep, provided
from faceauth.web.params import error

router = APIRouter(prefix="/v1/faces", tags=["faces"])

ClusterServiceDep = Annotated[ClusterService, Depends(provided(ClusterService))]


async def _scoped_request(body: schemas.ClusterRequest, principal: PrincipalDep) -> schemas.ClusterRequest:
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
    response_model=schemas.ClusterResponse,
    summary="Group faces by person: DBSCAN with the cosine metric over a tenant's faces or given embeddings",
    responses={
        400: error("bad_request: the body cannot be parsed (not UTF-8 JSON)"),
        413: error("too_many_faces: more than FACEAUTH_CLUSTER_MAX_FACES"),
        422: error("bad field: give exactly one of tenant / embeddings"),
        503: error("Milvus or the ML service is unavailable"),
    },
)
async def cluster(body: Annotated[schemas.ClusterRequest, Depends(_scoped_request)], service: ClusterServiceDep):
    if body.tenant is not None:
        result = await service.cluster_tenant(body.tenant, eps=body.eps, min_samples=body.min_samples)
    else:
        result = await service.cluster_embeddings(
            body.embeddings or [], body.ids, eps=body.eps, min_samples=body.min_samples
        )
    return schemas.ClusterResponse(
        clusters=[schemas.Cluster(label=i, size=len(ids), ids=ids) for i, ids in enumerate(result.clusters)],
        noise=result.noise,
        eps=body.eps,
        min_samples=body.min_samples,
        model_id=result.model_id,
    )
