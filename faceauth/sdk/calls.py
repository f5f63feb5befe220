"""The Face API's operations as plain request descriptions, shared by the sync and the async client, and the
retry policy both apply.

Kept apart from the transports so each operation's fields, idempotence and answer model are written once.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel

from faceauth import __version__
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
from faceauth.sdk.errors import FaceAuthConnectionError, RateLimitedError, UnavailableError, error_from_response
from faceauth.sdk.photos import Fields, Files, PhotoInput, add_photo, prepare
from faceauth.subjects.schemas import SubjectDeleteResponse, SubjectPageResponse, SubjectResponse
from faceauth.tenants.schemas import PurgeResponse
from faceauth.verification.schemas import VerifyResponse

M = TypeVar("M", bound=BaseModel)
DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = f"faceauth-sdk/{__version__}"
BatchItem = tuple[str, PhotoInput] | tuple[str, PhotoInput, str | None]


@dataclass
class Call(Generic[M]):
    method: Literal["GET", "POST", "DELETE"]
    path: str
    model: type[M]
    # Safe to send again after it may have reached the server (reads, upserts, deletes).
    idempotent: bool
    params: dict[str, Any] = field(default_factory=dict)
    data: Fields = field(default_factory=list)
    files: Files = field(default_factory=list)
    json: Any = None

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": {k: v for k, v in self.params.items() if v is not None}}
        if self.json is not None:
            kwargs["json"] = self.json
        elif self.files:
            kwargs["data"], kwargs["files"] = _as_dict(self.data), self.files
        elif self.data:
            kwargs["data"] = _as_dict(self.data)
        return kwargs

    def parse(self, response: httpx.Response) -> M:
        if response.status_code >= 400:
            raise error_from_response(response)
        return self.model.model_validate(response.json())


def _as_dict(fields: Fields) -> dict[str, str | list[str]]:
    """httpx takes repeated form fields as lists."""
    out: dict[str, str | list[str]] = {}
    for name, value in fields:
        if name in out:
            existing = out[name]
            out[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[name] = value
    return out


def _form(**values: Any) -> Fields:
    """Form fields, leaving out unset ones; booleans as the server reads them."""
    out: Fields = []
    for name, value in values.items():
        if value is None:
            continue
        out.append((name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return out


# -- settings from the arguments or the environment -----------------------------------------------------------


def resolve_settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    url = (base_url or os.environ.get("FACEAUTH_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("FACEAUTH_API_KEY")
    headers = {"User-Agent": USER_AGENT}
    if key:
        headers["X-Api-Key"] = key
    return url, headers


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries where they are safe.

    - The request never left (connection refused, connect or pool timeout): any call is sent again.
    - 429 (the rate limiter answers before anything is done) and 503 with Retry-After: idempotent calls; a 429
      for any call. A non-idempotent write (insert, batch insert without upsert) is never sent again after it
      may have reached the server: a 503 or a lost answer is raised for the caller to decide.
    """

    retries: int = 3
    max_wait: float = 30.0  # the longest single wait, whatever Retry-After says

    def wait_for(self, attempt: int, exc: Exception, call: Call) -> float | None:
        """Seconds to wait before the next attempt, or None to raise."""
        if attempt >= self.retries:
            return None
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return self._backoff(attempt)
        if isinstance(exc, httpx.TransportError):
            return self._backoff(attempt) if call.idempotent else None
        if isinstance(exc, RateLimitedError) or (isinstance(exc, UnavailableError) and call.idempotent):
            after = exc.retry_after
            if after is None and isinstance(exc, UnavailableError):
                return None  # a 503 that does not say when: not ours to retry
            return min(self.max_wait, after if after is not None else self._backoff(attempt))
        return None

    def _backoff(self, attempt: int) -> float:
        return min(self.max_wait, 0.25 * 2**attempt) * (0.5 + random.random() / 2)


def connection_error(exc: httpx.TransportError, url: str) -> FaceAuthConnectionError:
    return FaceAuthConnectionError(None, "connection_error", f"could not reach the Face API at {url}: {exc}")


# -- the operations ---------------------------------------------------------------------------------------------

_PHOTO = ("file", "image_b64", "image_url")


def enrol(
    face_id: str,
    photo: PhotoInput,
    *,
    replace: bool,
    tenant: str | None,
    subject_id: str | None,
    dedup: bool,
    aligned: bool,
) -> Call[EnrollResponse]:
    data = _form(id=face_id, tenant=tenant, subject_id=subject_id, dedup=dedup or None, aligned=aligned or None)
    files: Files = []
    add_photo(photo, _PHOTO, data, files)
    path = "/v1/faces/upsert" if replace else "/v1/faces/insert"
    return Call("POST", path, EnrollResponse, idempotent=replace, data=data, files=files)


def search(
    photo: PhotoInput,
    *,
    tenant: str | None,
    top_k: int | None,
    threshold: float | None,
    group_by: Literal["face", "subject"],
    query_id: str | None,
    aligned: bool,
) -> Call[SearchResponse]:
    data = _form(tenant=tenant, id=query_id, aligned=aligned or None)
    files: Files = []
    add_photo(photo, _PHOTO, data, files)
    params = {"top_k": top_k, "threshold": threshold, "group_by": group_by}
    return Call("POST", "/v1/faces/search", SearchResponse, idempotent=True, params=params, data=data, files=files)


def verify(
    probes: PhotoInput | Sequence[PhotoInput],
    *,
    tenant: str | None,
    reference_id: str | None,
    reference: PhotoInput | None,
    threshold: float | None,
    min_matches: int | None,
    require_quality: bool,
    aligned: bool,
) -> Call[VerifyResponse]:
    if (reference_id is None) == (reference is None):
        raise ValueError("give exactly one of reference_id (an enrolled face) or reference (a photo)")
    data = _form(
        tenant=tenant,
        reference_id=reference_id,
        threshold=threshold,
        min_matches=min_matches,
        require_quality=require_quality,
        aligned=aligned or None,
    )
    files: Files = []
    probe_list = list(probes) if isinstance(probes, list | tuple) else [probes]
    for probe in probe_list:
        add_photo(probe, ("probes", "probes_b64", "probes_url"), data, files)
    if reference is not None:
        add_photo(reference, ("reference", "reference_b64", "reference_url"), data, files)
    return Call("POST", "/v1/faces/verify", VerifyResponse, idempotent=True, data=data, files=files)


def get_face(face_id: str, *, tenant: str | None) -> Call[FaceResponse]:
    return Call("GET", f"/v1/faces/get/{face_id}", FaceResponse, idempotent=True, params={"tenant": tenant})


def delete_face(face_id: str, *, tenant: str | None) -> Call[DeleteResponse]:
    params = {"id": face_id, "tenant": tenant}
    return Call("DELETE", "/v1/faces/delete", DeleteResponse, idempotent=True, params=params)


def detect(photo: PhotoInput, *, tenant: str | None) -> Call[DetectResponse]:
    data = _form(tenant=tenant)
    files: Files = []
    add_photo(photo, _PHOTO, data, files)
    return Call("POST", "/v1/faces/detect", DetectResponse, idempotent=True, data=data, files=files)


def batch_insert(
    items: Iterable[BatchItem] | Mapping[str, PhotoInput],
    *,
    tenant: str | None,
    upsert: bool,
    dedup: bool,
    aligned: bool,
) -> Call[BatchInsertResponse]:
    """The batch route takes one kind of photo for all items: files and base64 go as files, URLs as URLs."""
    rows = list(items.items()) if isinstance(items, Mapping) else list(items)
    if not rows:
        raise ValueError("a batch needs at least one item")
    data = _form(tenant=tenant, upsert=upsert or None, dedup=dedup or None, aligned=aligned or None)
    files: Files = []
    prepared = [prepare(row[1]) for row in rows]
    urls = [p.kind == "url" for p in prepared]
    if any(urls) and not all(urls):
        raise ValueError("a batch takes photos by URL or by content, not both: send two batches")
    for row, photo in zip(rows, prepared, strict=True):
        data.append(("ids", row[0]))
        if photo.kind == "url":
            data.append(("image_urls", str(photo.content)))
        else:
            content = photo.content if photo.kind == "file" else _decode_b64(str(photo.content))
            files.append(("files", (photo.filename, content, "application/octet-stream")))  # type: ignore[arg-type]
    if any(len(row) > 2 and row[2] for row in rows):
        data.extend(("subject_ids", (row[2] if len(row) > 2 else None) or "") for row in rows)  # type: ignore[misc]
    return Call("POST", "/v1/faces/batch/insert", BatchInsertResponse, idempotent=upsert, data=data, files=files or [])


def _decode_b64(text: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[1]
    return base64.b64decode(text)


def image_url(face_id: str, *, tenant: str | None) -> Call[ImageLinkResponse]:
    path = f"/v1/faces/image-url/{face_id}"
    return Call("GET", path, ImageLinkResponse, idempotent=True, params={"tenant": tenant})


def cluster(
    *,
    tenant: str | None,
    embeddings: Sequence[Sequence[float]] | None,
    ids: Sequence[str] | None,
    eps: float,
    min_samples: int,
) -> Call[ClusterResponse]:
    body: dict[str, Any] = {"eps": eps, "min_samples": min_samples}
    if embeddings is not None:
        body["embeddings"] = [list(map(float, e)) for e in embeddings]
        if ids is not None:
            body["ids"] = list(ids)
    elif tenant is not None:
        body["tenant"] = tenant
    # Clustering only reads.
    return Call("POST", "/v1/faces/cluster", ClusterResponse, idempotent=True, json=body)


def purge_tenant(tenant: str) -> Call[PurgeResponse]:
    return Call("DELETE", f"/v1/tenants/{tenant}", PurgeResponse, idempotent=True)


def list_subjects(*, tenant: str | None, limit: int, cursor: str | None) -> Call[SubjectPageResponse]:
    params = {"tenant": tenant, "limit": limit, "cursor": cursor}
    return Call("GET", "/v1/subjects", SubjectPageResponse, idempotent=True, params=params)


def get_subject(subject_id: str, *, tenant: str | None) -> Call[SubjectResponse]:
    return Call("GET", f"/v1/subjects/{subject_id}", SubjectResponse, idempotent=True, params={"tenant": tenant})


def delete_subject(subject_id: str, *, tenant: str | None) -> Call[SubjectDeleteResponse]:
    path = f"/v1/subjects/{subject_id}"
    return Call("DELETE", path, SubjectDeleteResponse, idempotent=True, params={"tenant": tenant})
