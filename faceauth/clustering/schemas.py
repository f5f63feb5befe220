"""Bodies of /v1/faces/cluster."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from faceauth.contracts.ids import ID_PATTERN, TENANT_MAX
from faceauth.kit.requests import Answer


class ClusterRequest(BaseModel):
    """Either a tenant (its enrolled faces) or embeddings (with optional ids), not both."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(None, pattern=ID_PATTERN, max_length=TENANT_MAX)
    embeddings: list[list[float]] | None = Field(
        None, description="vectors to cluster (any dimension, all the same; up to FACEAUTH_CLUSTER_MAX_FACES)"
    )
    ids: list[str] | None = Field(None, description="a name per embedding (default: its position)")
    eps: float = Field(
        0.5, gt=0.0, le=2.0, description="neighbourhood radius in cosine distance (1 - similarity), 0..2"
    )
    min_samples: int = Field(2, ge=1, le=1000, description="points (itself included) that make a core point")


class Cluster(BaseModel):
    label: int
    size: int
    ids: list[str]


class ClusterResponse(Answer):
    clusters: list[Cluster] = Field(description="Largest first.")
    noise: list[str] = Field(description="Points in no cluster.")
    eps: float
    min_samples: int
    model_id: str | None = Field(description="The embedding model of the tenant's faces that were clustered.")
