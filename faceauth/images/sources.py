"""Where a photo comes from: an upload, base64 text, an http(s) URL or an s3:// key of the configured store.

Routes turn request fields into `ImageSource`s without doing any I/O; services load them with `ImageLoader`,
which knows the tenant (s3:// keys are scoped to it) and reports every failure with a stable code and the name
of the request field it came from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from faceauth.config import APISettings
from faceauth.images.fetch import ImageFetcher
from faceauth.kit.errors import AppError
from faceauth.kit.imagetypes import sniff_content_type
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable
from faceauth.storage.keys import tenant_prefix
from faceauth.storage.objects import ObjectStore


@dataclass(frozen=True)
class ImageSource:
    """One photo of a request: exactly one of `data` (uploaded bytes), `b64` or `url`. `field` names the request
    field it came from (errors point at it)."""

    field: str
    data: bytes | None = None
    b64: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.data, self.b64, self.url)) != 1:
            raise ValueError("an ImageSource holds exactly one of data, b64, url")


def _error(status: int, code: str, message: str, field: str, **details: object) -> AppError:
    return AppError(status, code, message, details={"field": field, **details})


def _with_field(exc: AppError, field: str) -> AppError:
    return AppError(exc.status, exc.code, exc.message, details={**(exc.details or {}), "field": field})


class ImageLoader:
    def __init__(self, fetcher: ImageFetcher, objects: ObjectStore, settings: APISettings) -> None:
        self.fetcher = fetcher
        self.objects = objects
        self.settings = settings

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def load(self, source: ImageSource, *, tenant: str | None) -> bytes:
        """The photo's bytes (at most FACEAUTH_MAX_IMAGE_BYTES), or an AppError naming `source.field`."""
        if source.data is not None:
            data = source.data
        elif source.b64 is not None:
            data = await asyncio.to_thread(self._decode_b64, source.b64, source.field)
        else:
            data = await self._load_url(str(source.url), source.field, tenant)
        if not data:
            raise _error(400, "empty_image", "the image is empty", source.field)
        if len(data) > self.settings.max_image_bytes:
            raise _error(
                413,
                "payload_too_large",
                f"the image is larger than {self.settings.max_image_bytes} bytes",
                source.field,
            )
        return data

    async def load_many(self, sources: list[ImageSource], *, tenant: str | None) -> list[bytes | AppError]:
        """Every source concurrently; a failure is returned in its place instead of raised."""

        async def one(source: ImageSource) -> bytes | AppError:
            try:
                return await self.load(source, tenant=tenant)
            except AppError as exc:
                return exc

        return list(await asyncio.gather(*(one(s) for s in sources)))

    def _decode_b64(self, text: str, field: str) -> bytes:
        limit = self.settings.max_image_bytes
        if text.startswith("data:"):  # a data URL: data:image/jpeg;base64,....
            text = text.partition(",")[2]
        text = "".join(text.split())  # line breaks are common in base64 from other tools
        if len(text) > (limit // 3 + 1) * 4:
            raise _error(413, "payload_too_large", f"the image is larger than {limit} bytes", field)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _error(400, "invalid_base64", "the image is not valid base64", field) from None

    async def _load_url(self, url: str, field: str, tenant: str | None) -> bytes:
        scheme = url.partition(":")[0].lower()
        if scheme == "s3":
            return await self._load_s3(url, field, tenant)
        if scheme not in ("http", "https"):
            raise _error(422, "image_url_invalid", "image URLs must be http(s):// or s3://", field)
        try:
            return await self.fetcher.fetch(url)
        except AppError as exc:
            raise _with_field(exc, field) from None

    async def _load_s3(self, url: str, field: str, tenant: str | None) -> bytes:
        parts = urlsplit(url)
        bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
        if parts.query or parts.fragment or not key or key.endswith("/"):
            raise _error(422, "image_url_invalid", "s3:// URLs are s3://<bucket>/<key>", field)
        if bucket != self.settings.minio_bucket:
            raise _error(
                400, "image_url_forbidden", "s3:// URLs may only name the configured bucket", field, reason="bucket"
            )
        # Other tenants' images live in the same bucket: a request for a tenant reads only that tenant's images and
        # its part of the drop area (`_uploads/<tenant>/`); only a request for no tenant (an admin key) reads the
        # whole drop area. "." / ".." segments could step out of either.
        drop = self.settings.image_url_s3_prefix
        allowed = [f"{drop}{tenant_prefix(tenant)}", tenant_prefix(tenant)] if tenant else [drop]
        if any(seg in ("", ".", "..") for seg in key.split("/")) or not any(key.startswith(p) for p in allowed):
            raise _error(
                400,
                "image_url_forbidden",
                f"s3:// keys must be under {' or '.join(allowed)}",
                field,
                reason="key",
            )
        try:
            stored = await self.objects.get(key)
        except ObjectNotFound:
            raise _error(
                422, "image_url_unreachable", "no such object in the store", field, upstream_status=404
            ) from None
        except StorageUnavailable:
            raise AppError(
                503, "object_store_unavailable", "the object store is unavailable; retry", headers={"Retry-After": "1"}
            ) from None
        except ValueError:  # a key the store cannot hold (segment too long, ...): it cannot exist
            raise _error(422, "image_url_invalid", "not a valid object key", field) from None
        if len(stored.data) > self.settings.max_image_bytes:
            raise _error(413, "image_url_too_large", "the object is larger than the image limit", field)
        if sniff_content_type(stored.data) == "application/octet-stream":
            raise _error(415, "image_url_not_image", "the object is not an image", field)
        return stored.data


def make_image_loader(objects: ObjectStore, settings: APISettings) -> ImageLoader:
    fetcher = ImageFetcher(
        timeout_s=settings.image_url_timeout_seconds,
        max_bytes=settings.max_image_bytes,
        max_redirects=settings.image_url_max_redirects,
        allowed_hosts=settings.allowed_url_hosts,
    )
    return ImageLoader(fetcher, objects, settings)
