"""Clustering faces (DBSCAN, cosine metric): a tenant's enrolled faces, or embeddings sent with the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from faceauth.clustering.dbscan import PairBudgetExceeded, dbscan_cosine
from faceauth.config import APISettings
from faceauth.kit.errors import AppError, unavailable
from faceauth.ml_client import MLClient
from faceauth.storage.records import TooManyRows
from faceauth.storage.vectors import FaceIndex


@dataclass(frozen=True)
class Clustering:
    clusters: list[list[str]]  # ids per cluster, clusters largest first
    noise: list[str]
    model_id: str | None  # the embedding model of a tenant's faces; None for given embeddings


class ClusterService:
    def __init__(self, index: FaceIndex, ml: MLClient, settings: APISettings) -> None:
        self.index = index
        self.ml = ml
        self.settings = settings
        # Keys with a clustering running in this process (one job per key at a time).
        self._running: set[str | None] = set()

    @asynccontextmanager
    async def one_job(self, key_id: str | None) -> AsyncIterator[None]:
        """Run the body as the key's only clustering job: 429 cluster_busy while another one runs."""
        if key_id in self._running:
            raise AppError(
                429,
                "cluster_busy",
                "a clustering request of this API key is still running; wait for it to finish",
                headers={"Retry-After": "1"},
            )
        self._running.add(key_id)
        try:
            yield
        finally:
            self._running.discard(key_id)

    async def cluster_tenant(self, tenant: str, *, eps: float, min_samples: int) -> Clustering:
        """The tenant's faces embedded by the ML service's current model (others cannot be compared)."""
        model_id = await self._current_model_id()
        try:
            found = await self.index.vectors(tenant, model_id=model_id, max_rows=self._max_rows)
        except TooManyRows:
            raise self._too_many() from None
        ids = [r.face_id for r in found.records]
        return await self._run(found.embeddings, ids, eps, min_samples, model_id)

    async def cluster_embeddings(
        self, embeddings: list[list[float]], ids: list[str] | None, *, eps: float, min_samples: int
    ) -> Clustering:
        if not embeddings:
            return Clustering([], [], None)
        if ids is not None and len(ids) != len(embeddings):
            raise AppError(422, "validation_error", f"{len(ids)} ids for {len(embeddings)} embeddings")
        if len(embeddings) > self.settings.cluster_max_embeddings:
            raise self._too_many(self.settings.cluster_max_embeddings, "FACEAUTH_CLUSTER_MAX_EMBEDDINGS")
        dim = self.index.dim
        wrong = next((i for i, e in enumerate(embeddings) if len(e) != dim), None)
        if wrong is not None:
            raise AppError(
                422,
                "validation_error",
                f"embedding {wrong} has {len(embeddings[wrong])} numbers; the embedding model's vectors have {dim}",
            )
        matrix = np.asarray(embeddings, dtype=np.float32)
        if not np.isfinite(matrix).all() or (np.linalg.norm(matrix, axis=1) == 0).any():
            raise AppError(422, "validation_error", "embeddings must be finite and non-zero")
        labels = ids if ids is not None else [str(i) for i in range(len(embeddings))]
        return await self._run(matrix, labels, eps, min_samples, None)

    @property
    def _max_rows(self) -> int:
        # A face has one row (two while it is being replaced).
        return 2 * self.settings.cluster_max_faces

    def _too_many(self, limit: int | None = None, setting: str = "FACEAUTH_CLUSTER_MAX_FACES") -> AppError:
        limit = limit if limit is not None else self.settings.cluster_max_faces
        return AppError(413, "too_many_faces", f"more than {limit} faces to cluster ({setting})")

    async def _current_model_id(self) -> str:
        body = await self.ml.ready()
        model_id = ((body.get("models") or {}).get("embedder") or {}).get("model_id")
        if not model_id:
            raise unavailable("ml_service_unavailable", "the ML service reports no embedding model")
        return str(model_id)

    async def _run(
        self, matrix: np.ndarray, ids: list[str], eps: float, min_samples: int, model_id: str | None
    ) -> Clustering:
        if len(ids) > self.settings.cluster_max_faces:
            raise self._too_many()
        if not ids:
            return Clustering([], [], model_id)
        # CPU-bound (a chunked similarity matrix): off the event loop.
        budget = self.settings.cluster_max_pairs
        try:
            labels = await asyncio.to_thread(dbscan_cosine, matrix, eps=eps, min_samples=min_samples, max_pairs=budget)
        except PairBudgetExceeded:
            raise AppError(
                422,
                "too_dense",
                f"these faces have more than {budget} neighbour pairs within eps (FACEAUTH_CLUSTER_MAX_PAIRS): "
                "use a smaller eps, or cluster fewer faces",
            ) from None
        groups: dict[int, list[str]] = {}
        noise: list[str] = []
        for face_id, label in zip(ids, labels.tolist(), strict=True):
            if label < 0:
                noise.append(face_id)
            else:
                groups.setdefault(label, []).append(face_id)
        clusters = sorted(groups.values(), key=lambda members: (-len(members), members[0]))
        return Clustering(clusters, noise, model_id)
