"""`FaceAuthClient` (sync) and `AsyncFaceAuthClient` (async): every Face API operation, typed answers, typed
errors, bounded safe retries. Both build their requests from `faceauth.sdk.calls`, so they cannot drift apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Literal, Self

import httpx

from faceauth.clustering.schemas import ClusterResponse
from faceauth.faces.schemas import (
    BatchInsertResponse,
    DeleteResponse,
    DetectResponse,
    EnrollResponse,
    FaceResponse,
    ImageLinkResponse,
    SearchResponse,
)
from faceauth.sdk import calls
from faceauth.sdk.calls import BatchItem, Call, M, RetryPolicy
from faceauth.sdk.errors import FaceAuthError
from faceauth.sdk.photos import PhotoInput
from faceauth.subjects.schemas import SubjectDeleteResponse, SubjectOut, SubjectResponse
from faceauth.tenants.schemas import PurgeResponse
from faceauth.verification.schemas import VerifyResponse

GroupBy = Literal["face", "subject"]


class _Base:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        tenant: str | None,
        timeout: float,
        retries: int,
        max_retry_wait: float,
    ) -> None:
        self.base_url, self._headers = calls.resolve_settings(base_url, api_key)
        # The tenant to act for when a call names none: needed only with an admin key (a tenant key implies its own).
        self.tenant = tenant
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, max_wait=max_retry_wait)

    def _t(self, tenant: str | None) -> str | None:
        return tenant if tenant is not None else self.tenant


class FaceAuthClient(_Base):
    """A client for the Face API.

    ``FaceAuthClient()`` reads ``FACEAUTH_URL`` (default http://127.0.0.1:8000) and ``FACEAUTH_API_KEY``.
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, tenant, timeout, retries, max_retry_wait)
        self._http = http_client or httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)
        self.subjects = Subjects(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def _send(self, call: Call[M]) -> M:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.request_kwargs())
                return call.parse(response)
            except (httpx.TransportError, FaceAuthError) as exc:
                wait = self.retry.wait_for(attempt, exc, call)
                if wait is None:
                    if isinstance(exc, httpx.TransportError):
                        raise calls.connection_error(exc, self.base_url) from exc
                    raise
            time.sleep(wait)
            attempt += 1

    # -- faces ----------------------------------------------------------------------------------------------

    def insert(
        self,
        face_id: str,
        photo: PhotoInput,
        *,
        subject_id: str | None = None,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> EnrollResponse:
        """Enrol a new face (ConflictError face_already_exists if the id is taken)."""
        return self._send(
            calls.enrol(
                face_id,
                photo,
                replace=False,
                tenant=self._t(tenant),
                subject_id=subject_id,
                dedup=dedup,
                aligned=aligned,
            )
        )

    def upsert(
        self,
        face_id: str,
        photo: PhotoInput,
        *,
        subject_id: str | None = None,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> EnrollResponse:
        """Enrol or replace a face."""
        return self._send(
            calls.enrol(
                face_id,
                photo,
                replace=True,
                tenant=self._t(tenant),
                subject_id=subject_id,
                dedup=dedup,
                aligned=aligned,
            )
        )

    def search(
        self,
        photo: PhotoInput,
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        group_by: GroupBy = "face",
        query_id: str | None = None,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> SearchResponse:
        """1:N search; a photo that fails the quality check gets no matches and `searchResult.skipped_reason`."""
        return self._send(
            calls.search(
                photo,
                tenant=self._t(tenant),
                top_k=top_k,
                threshold=threshold,
                group_by=group_by,
                query_id=query_id,
                aligned=aligned,
            )
        )

    def verify(
        self,
        probes: PhotoInput | Sequence[PhotoInput],
        *,
        reference_id: str | None = None,
        reference: PhotoInput | None = None,
        threshold: float | None = None,
        min_matches: int | None = None,
        require_quality: bool = True,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> VerifyResponse:
        """1:1: do the probe photos show the enrolled face `reference_id` (or the person in `reference`)?"""
        return self._send(
            calls.verify(
                probes,
                tenant=self._t(tenant),
                reference_id=reference_id,
                reference=reference,
                threshold=threshold,
                min_matches=min_matches,
                require_quality=require_quality,
                aligned=aligned,
            )
        )

    def get(self, face_id: str, *, tenant: str | None = None) -> FaceResponse:
        return self._send(calls.get_face(face_id, tenant=self._t(tenant)))

    def delete(self, face_id: str, *, tenant: str | None = None) -> DeleteResponse:
        return self._send(calls.delete_face(face_id, tenant=self._t(tenant)))

    def detect(self, photo: PhotoInput, *, tenant: str | None = None) -> DetectResponse:
        return self._send(calls.detect(photo, tenant=self._t(tenant)))

    def batch_insert(
        self,
        items: Iterable[BatchItem] | Mapping[str, PhotoInput],
        *,
        upsert: bool = False,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> BatchInsertResponse:
        """Enrol several faces in one request: ``{face_id: photo}`` or ``[(face_id, photo[, subject_id])]``.
        Each item succeeds or fails on its own (`results[i].status`, `.error`)."""
        return self._send(
            calls.batch_insert(items, tenant=self._t(tenant), upsert=upsert, dedup=dedup, aligned=aligned)
        )

    def image_url(self, face_id: str, *, tenant: str | None = None) -> ImageLinkResponse:
        return self._send(calls.image_url(face_id, tenant=self._t(tenant)))

    def cluster(
        self,
        *,
        embeddings: Sequence[Sequence[float]] | None = None,
        ids: Sequence[str] | None = None,
        eps: float = 0.5,
        min_samples: int = 2,
        tenant: str | None = None,
    ) -> ClusterResponse:
        """Group the tenant's faces (or the given embeddings) by person."""
        return self._send(
            calls.cluster(tenant=self._t(tenant), embeddings=embeddings, ids=ids, eps=eps, min_samples=min_samples)
        )

    def purge_tenant(self, tenant: str) -> PurgeResponse:
        """Delete every face, vector and image of a tenant (admin key)."""
        return self._send(calls.purge_tenant(tenant))


class Subjects:
    """`client.subjects`: list (every page, lazily), get, delete."""

    def __init__(self, client: FaceAuthClient) -> None:
        self._client = client

    def list(self, *, page_size: int = 100, tenant: str | None = None) -> Iterator[SubjectOut]:
        cursor: str | None = None
        while True:
            page = self._client._send(
                calls.list_subjects(tenant=self._client._t(tenant), limit=page_size, cursor=cursor)
            )
            yield from page.subjects
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get(self, subject_id: str, *, tenant: str | None = None) -> SubjectResponse:
        return self._client._send(calls.get_subject(subject_id, tenant=self._client._t(tenant)))

    def delete(self, subject_id: str, *, tenant: str | None = None) -> SubjectDeleteResponse:
        return self._client._send(calls.delete_subject(subject_id, tenant=self._client._t(tenant)))


class AsyncFaceAuthClient(_Base):
    """The async twin of `FaceAuthClient` (same methods, awaited; `subjects.list` is an async iterator)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, tenant, timeout, retries, max_retry_wait)
        self._http = http_client or httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout)
        self.subjects = AsyncSubjects(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call[M]) -> M:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.request_kwargs())
                return call.parse(response)
            except (httpx.TransportError, FaceAuthError) as exc:
                wait = self.retry.wait_for(attempt, exc, call)
                if wait is None:
                    if isinstance(exc, httpx.TransportError):
                        raise calls.connection_error(exc, self.base_url) from exc
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def insert(
        self,
        face_id: str,
        photo: PhotoInput,
        *,
        subject_id: str | None = None,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> EnrollResponse:
        return await self._send(
            calls.enrol(
                face_id,
                photo,
                replace=False,
                tenant=self._t(tenant),
                subject_id=subject_id,
                dedup=dedup,
                aligned=aligned,
            )
        )

    async def upsert(
        self,
        face_id: str,
        photo: PhotoInput,
        *,
        subject_id: str | None = None,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> EnrollResponse:
        return await self._send(
            calls.enrol(
                face_id,
                photo,
                replace=True,
                tenant=self._t(tenant),
                subject_id=subject_id,
                dedup=dedup,
                aligned=aligned,
            )
        )

    async def search(
        self,
        photo: PhotoInput,
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        group_by: GroupBy = "face",
        query_id: str | None = None,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> SearchResponse:
        return await self._send(
            calls.search(
                photo,
                tenant=self._t(tenant),
                top_k=top_k,
                threshold=threshold,
                group_by=group_by,
                query_id=query_id,
                aligned=aligned,
            )
        )

    async def verify(
        self,
        probes: PhotoInput | Sequence[PhotoInput],
        *,
        reference_id: str | None = None,
        reference: PhotoInput | None = None,
        threshold: float | None = None,
        min_matches: int | None = None,
        require_quality: bool = True,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> VerifyResponse:
        return await self._send(
            calls.verify(
                probes,
                tenant=self._t(tenant),
                reference_id=reference_id,
                reference=reference,
                threshold=threshold,
                min_matches=min_matches,
                require_quality=require_quality,
                aligned=aligned,
            )
        )

    async def get(self, face_id: str, *, tenant: str | None = None) -> FaceResponse:
        return await self._send(calls.get_face(face_id, tenant=self._t(tenant)))

    async def delete(self, face_id: str, *, tenant: str | None = None) -> DeleteResponse:
        return await self._send(calls.delete_face(face_id, tenant=self._t(tenant)))

    async def detect(self, photo: PhotoInput, *, tenant: str | None = None) -> DetectResponse:
        return await self._send(calls.detect(photo, tenant=self._t(tenant)))

    async def batch_insert(
        self,
        items: Iterable[BatchItem] | Mapping[str, PhotoInput],
        *,
        upsert: bool = False,
        dedup: bool = False,
        aligned: bool = False,
        tenant: str | None = None,
    ) -> BatchInsertResponse:
        return await self._send(
            calls.batch_insert(items, tenant=self._t(tenant), upsert=upsert, dedup=dedup, aligned=aligned)
        )

    async def image_url(self, face_id: str, *, tenant: str | None = None) -> ImageLinkResponse:
        return await self._send(calls.image_url(face_id, tenant=self._t(tenant)))

    async def cluster(
        self,
        *,
        embeddings: Sequence[Sequence[float]] | None = None,
        ids: Sequence[str] | None = None,
        eps: float = 0.5,
        min_samples: int = 2,
        tenant: str | None = None,
    ) -> ClusterResponse:
        return await self._send(
            calls.cluster(tenant=self._t(tenant), embeddings=embeddings, ids=ids, eps=eps, min_samples=min_samples)
        )

    async def purge_tenant(self, tenant: str) -> PurgeResponse:
        return await self._send(calls.purge_tenant(tenant))


class AsyncSubjects:
    def __init__(self, client: AsyncFaceAuthClient) -> None:
        self._client = client

    async def list(self, *, page_size: int = 100, tenant: str | None = None) -> AsyncIterator[SubjectOut]:
        cursor: str | None = None
        while True:
            page = await self._client._send(
                calls.list_subjects(tenant=self._client._t(tenant), limit=page_size, cursor=cursor)
            )
            for subject in page.subjects:
                yield subject
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get(self, subject_id: str, *, tenant: str | None = None) -> SubjectResponse:
        return await self._client._send(calls.get_subject(subject_id, tenant=self._client._t(tenant)))

    async def delete(self, subject_id: str, *, tenant: str | None = None) -> SubjectDeleteResponse:
        return await self._client._send(calls.delete_subject(subject_id, tenant=self._client._t(tenant)))
