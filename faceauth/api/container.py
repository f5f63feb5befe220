"""The composition root: the stores, the ML client and every service of the Face API, built from the settings.

The app, the CLI (`faceauth repair`, `reembed`, `keys`) and the benchmarks build the Face API the same way, here.
Tests pass in stores or a client of their own (wrapped to inject faults); what the container did not build, it
does not close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

from faceauth.auth.cache import KeyCache
from faceauth.auth.keys import KeyStore
from faceauth.clustering.service import ClusterService
from faceauth.config import APISettings
from faceauth.coordination import Coordinator, open_coordinator
from faceauth.faces.repository import FaceRepository
from faceauth.faces.service import FaceService
from faceauth.health.presence import Presence
from faceauth.health.service import HealthService
from faceauth.images.links import ImageLinks
from faceauth.images.service import ImageService
from faceauth.kit.errors import AppError
from faceauth.maintenance.reembed import Reembedder
from faceauth.ml_client import MLClient
from faceauth.photos.analyzer import PhotoAnalyzer
from faceauth.photos.fetch import ImageFetcher
from faceauth.photos.loader import PhotoLoader
from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.local import LocalObjectStore
from faceauth.storage.milvus.index import MilvusFaceIndex
from faceauth.storage.objects import ObjectStore
from faceauth.storage.s3 import S3ObjectStore
from faceauth.storage.vectors import FaceIndex
from faceauth.subjects.service import SubjectService
from faceauth.tenants.service import TenantService
from faceauth.verification.service import VerificationService

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
        # Replicas taking turns under shared locks must each read what the last holder wrote: Strong.
        consistency_level="Strong" if settings.coordination_url else settings.milvus_consistency_level,
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


def ml_client(settings: APISettings) -> MLClient:
    return MLClient(
        settings.ml_inference_service_url,
        token=settings.ml_inference_auth_token,
        connect_timeout=settings.ml_connect_timeout_seconds,
        timeout=settings.ml_timeout_seconds,
        connect_retries=settings.ml_connect_retries,
        max_connections=settings.ml_max_connections,
    )


def photo_loader(settings: APISettings, objects: ObjectStore) -> PhotoLoader:
    fetcher = ImageFetcher(
        timeout_s=settings.image_url_timeout_seconds,
        max_bytes=settings.max_image_bytes,
        max_redirects=settings.image_url_max_redirects,
        allowed_hosts=settings.allowed_url_hosts,
    )
    return PhotoLoader(
        fetcher,
        objects,
        max_bytes=settings.max_image_bytes,
        bucket=settings.minio_bucket,
        drop_prefix=settings.image_url_s3_prefix,
    )


async def _open_with_retry(name: str, store: FaceIndex | ObjectStore, deadline_s: float) -> None:
    """Containers start in any order: wait a while for a store rather than crash-looping."""
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            await store.open()
            return
        except StorageUnavailable as exc:
            if time.monotonic() - started > deadline_s:
                raise
            log.warning("%s not reachable yet (%s); retrying in %.1f s", name, exc.detail, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Container:
    """Every part of the Face API, wired once. Build it, `await open()`, use it, `await close()`."""

    def __init__(
        self,
        settings: APISettings,
        *,
        index: FaceIndex | None = None,
        objects: ObjectStore | None = None,
        ml: MLClient | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.settings = settings
        self.index = index or open_face_index(settings)
        self.objects = objects or open_object_store(settings)
        self.ml = ml or ml_client(settings)
        self.coordinator = coordinator or open_coordinator(settings)
        # What it built, it closes; what it was given belongs to the caller.
        self._closers = [
            close
            for close, given in (
                (self.ml.aclose, ml),
                (self.index.close, index),
                (self.objects.close, objects),
                (self.coordinator.close, coordinator),
            )
            if given is None
        ]

        self.loader = photo_loader(settings, self.objects)
        self.analyzer = PhotoAnalyzer(self.loader, self.ml)
        self.repository = FaceRepository(
            self.index,
            self.objects,
            store_images=settings.store_images,
            locks=self.coordinator.locks,
            shared_locks=self.coordinator.shared,
        )
        self.images = ImageService(ImageLinks(self.objects), self.objects, link_seconds=settings.image_link_seconds)
        self.key_store = KeyStore(self.objects)
        self.key_cache = KeyCache(self.key_store)

        self.faces = FaceService(self.repository, self.index, self.analyzer, self.images, settings)
        self.subjects = SubjectService(
            self.index, self.repository, max_faces_per_subject=settings.max_faces_per_subject
        )
        self.verification = VerificationService(self.analyzer, self.index, settings)
        self.clustering = ClusterService(self.index, self.ml, settings)
        self.tenants = TenantService(self.index, self.objects)
        # Only a store other processes can share (S3) can have other replicas on it; the local folder is one host's.
        presence_s = settings.presence_interval_seconds if settings.object_store == "s3" else 0.0
        self.presence = Presence(self.objects, interval_s=presence_s, coordinated=self.coordinator.shared)
        self.health = HealthService(
            self.index, self.objects, self.ml, coordinator=self.coordinator, presence=self.presence
        )
        self.reembedder = Reembedder(self.repository, self.analyzer)

    @property
    def services(self) -> dict[type, object]:
        """What the routes' dependencies look up, by class (faceauth.web.deps.provided)."""
        parts = (self.faces, self.subjects, self.verification, self.clustering, self.tenants, self.health, self.images)
        return {type(part): part for part in parts}

    async def open(self, *, wait_s: float = 0.0) -> None:
        """Connect the stores (the object store first: the keys live there), each retried for up to `wait_s`, then
        the coordination server (not waited for: while it is down, writes and rate-limited requests answer 503)."""
        await _open_with_retry("the object store", self.objects, wait_s)
        await self.key_store.open()  # the key-id secret, read once: forged ids then cost no store read
        await _open_with_retry("Milvus", self.index, wait_s)
        try:
            await self.coordinator.open()
        except AppError:
            log.error("the coordination server (FACEAUTH_COORDINATION_URL) is not reachable yet")

    async def close(self) -> None:
        async with AsyncExitStack() as stack:  # every close runs, whichever fails
            for close in (self.loader.aclose, *self._closers):
                stack.push_async_callback(close)
