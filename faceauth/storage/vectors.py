"""The face index the Face API depends on: one row per stored face revision, partitioned by tenant.

Implemented by `faceauth.storage.milvus.index.MilvusFaceIndex`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceauth.storage.records import Exclusion, FaceRecord, GroupBy, Match, TenantVectors


class FaceIndex(Protocol):
    dim: int  # the dimension of the vectors it holds (the embedding model's)

    async def open(self) -> None:
        """Connect; create the collection and index if missing; load it. Idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageUnavailable("vectors", ...) when the server does not answer."""

    async def add(self, record: FaceRecord, embedding: np.ndarray) -> None:
        """Insert one row. Visible to the next find()/search() of this process (read-your-writes)."""

    async def find(self, tenant: str, face_id: str) -> list[FaceRecord]:
        """Every stored revision of (tenant, face_id), newest first; [] if none."""

    async def remove(self, tenant: str, row_ids: list[str]) -> None:
        """Delete rows by primary key within the tenant. Missing rows are not an error."""

    async def search(
        self,
        tenant: str,
        embedding: np.ndarray,
        *,
        model_id: str,
        limit: int,
        threshold: float,
        group_by: GroupBy = "face",
        exclude: Exclusion | None = None,
    ) -> list[Match]:
        """Nearest faces of this tenant embedded by `model_id`, score (cosine) >= threshold, best first, at most
        `limit` matches and one per face_id (group_by "face") or per subject, its best face (group_by "subject").
        `exclude` leaves out the faces of one subject and one face id (a duplicate check of a new enrolment)."""

    async def subject_faces(self, tenant: str, subject_id: str) -> list[FaceRecord]:
        """Every stored row of the subject's faces, newest first."""

    async def list_subjects(self, tenant: str, *, after: str | None, limit: int) -> list[list[FaceRecord]]:
        """The tenant's first `limit` subjects in subject_id order after `after` (a cursor), each as its rows."""

    async def vectors(self, tenant: str, *, model_id: str, face_id: str | None = None, max_rows: int) -> TenantVectors:
        """Stored rows and embeddings of the tenant's faces (only `face_id`'s when given) made by `model_id`.
        More than `max_rows` rows raise TooManyRows."""

    async def purge_tenant(self, tenant: str) -> int:
        """Delete every row of the tenant; the number of rows there were."""

    async def other_model_ids(self, model_id: str) -> list[str]:
        """Embedding model ids other than `model_id` that still have rows in the collection (sorted, at most a
        few dozen). Cheap on any collection size: readiness uses it to warn after a model change."""

    async def rows_of_other_models(self, model_id: str, limit: int) -> list[FaceRecord]:
        """Up to `limit` rows embedded by another model than `model_id`, any tenant (to re-embed them)."""

    async def scan_rows(self, *, after: str | None = None, limit: int = 1000) -> list[FaceRecord]:
        """Rows of every tenant in row_id order: up to `limit` whose row_id sorts after `after` (None: from the
        first); [] when there are no more. Pass the last row_id of a page to get the next one. For maintenance
        passes over the whole collection (the orphan sweep), not requests; rows written meanwhile may be missed."""
