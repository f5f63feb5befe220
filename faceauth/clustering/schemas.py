"""Bodies of /v1/faces/cluster."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from faceauth.contracts.ids import ID_PATTERN, TENANT_MAX
from faceauth.kit.requests import Answer

MAX_EPS = 1.0


class ClusterRequest(BaseModel):
    """Either a tenant (its enrolled faces) or embeddings (with optional ids), not both."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(None, pattern=ID_PATTERN, max_length=TENANT_MAX)
    embeddings: list[list[float]] | None = Field(
        None,
        description=(
            "vectors to cluster, each of the embedding model's dimension (512); up to FACEAUTH_CLUSTER_MAX_EMBEDDINGS"
        ),
    )
    ids: list[str] | None = Field(None, description="a name per embedding (default: its position)")
    # Capped at 1 (similarity >= 0): a larger radius joins unrelated faces and makes every pair a neighbour.
    eps: float = Field(
        0.5, gt=0.0, le=MAX_EPS, description="neighbourhood radius in cosine distance (1 - similarity), up to 1"
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
