"""The stores the settings name, built but not yet opened (the caller awaits `open()`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from faceauth.storage.local import LocalObjectStore
from faceauth.storage.milvus.index import MilvusFaceIndex
from faceauth.storage.objects import ObjectStore
from faceauth.storage.s3 import S3ObjectStore

if TYPE_CHECKING:
    from faceauth.config import APISettings

log = logging.getLogger(__name__)


def open_face_index(settings: APISettings, model_dim: int | None = None) -> MilvusFaceIndex:
    """The index for these settings (not connected yet: call `await index.open()`).

    `model_dim`, when the embedding model's dimension is known, wins over FACEAUTH_MILVUS_EMBEDDING_DIM: the
    collection has to hold the model's vectors.
    """
    dim = model_dim if model_dim is not None else settings.milvus_embedding_dim
    if model_dim is not None and model_dim != settings.milvus_embedding_dim:
        log.warning(
            "the embedding model makes %d-d vectors but FACEAUTH_MILVUS_EMBEDDING_DIM=%d; using %d",
            model_dim,
            settings.milvus_embedding_dim,
            model_dim,
        )
    return MilvusFaceIndex(
        settings.resolved_milvus_uri,
        collection=settings.milvus_collection,
        dim=dim,
        token=settings.milvus_token,
        db_name=settings.milvus_db_name,
        index_type=settings.milvus_index_type,
        hnsw_m=settings.milvus_hnsw_m,
        hnsw_ef_construction=settings.milvus_hnsw_ef_construction,
        search_ef=settings.milvus_search_ef,
        ivf_nlist=settings.milvus_ivf_nlist,
        ivf_nprobe=settings.milvus_ivf_nprobe,
        scann_reorder_k=settings.milvus_scann_reorder_k,
        consistency_level=settings.milvus_consistency_level,
        timeout=settings.milvus_timeout_seconds,
        max_faces_per_subject=settings.max_faces_per_subject,
    )


def open_object_store(settings: APISettings) -> ObjectStore:
    """The store `settings.object_store` names, not yet opened (the caller awaits `open()`, with retries)."""
    if settings.object_store == "s3":
        return S3ObjectStore(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key,
            settings.minio_bucket,
            secure=settings.minio_secure,
            region=settings.minio_region,
            connect_timeout=settings.minio_connect_timeout_seconds,
            timeout=settings.minio_timeout_seconds,
            retries=settings.minio_retries,
            max_connections=settings.minio_max_connections,
            public_url=settings.minio_public_url,
        )
    return LocalObjectStore(settings.resolved_local_store_dir)
