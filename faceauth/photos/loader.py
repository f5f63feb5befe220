"""Reading a photo given by URL: http(s) through the SSRF-safe fetcher, s3:// from the configured store (scoped
to the request's tenant). Uploads and base64 were read and checked where they entered (photos.deps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

from faceauth.kit.errors import AppError
from faceauth.kit.imagetypes import sniff_content_type
from faceauth.photos.fetch import ImageFetcher
from faceauth.photos.sources import Photo
from faceauth.storage.errors import ObjectNotFound, ObjectTooLarge, StorageUnavailable
from faceauth.storage.keys import tenant_prefix
from faceauth.storage.objects import ObjectStore
from faceauth.web.handlers import storage_unavailable


def _error(status: int, code: str, message: str, field: str, **details: object) -> AppError:
    return AppError(status, code, message, details={"field": field, **details})


class _FetchSlots:
    """At most `total` URL downloads at once, and at most `per_caller` of one caller (the others wait their turn):
    one tenant cannot make the API open hundreds of outgoing connections, nor take every slot from the others."""

    def __init__(self, total: int, per_caller: int) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_caller = per_caller
        self._callers: dict[str | None, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, caller: str | None) -> AsyncIterator[None]:
        gate, users = self._callers.get(caller, (asyncio.Semaphore(self._per_caller), 0))
        self._callers[caller] = (gate, users + 1)
        try:
            async with gate, self._total:  # the caller's own slot first: a queue of one caller holds no global slot
                yield
        finally:
            gate, users = self._callers[caller]
            if users == 1:
                del self._callers[caller]
            else:
                self._callers[caller] = (gate, users - 1)


class PhotoLoader:
    def __init__(
        self,
        fetcher: ImageFetcher,
        objects: ObjectStore,
        *,
        max_bytes: int,
        bucket: str,
        drop_prefix: str,
        max_fetches: int = 32,
        max_fetches_per_caller: int = 4,
    ):
        """`bucket`: the only bucket s3:// URLs may name; `drop_prefix`: the store's drop area for photos to be
        checked (FACEAUTH_IMAGE_URL_S3_PREFIX); `max_fetches` (`_per_caller`): URL downloads at once, in all and
        per tenant."""
        self.fetcher = fetcher
        self.objects = objects
        self.max_bytes = max_bytes
        self.bucket = bucket
        self.drop_prefix = drop_prefix
        self._slots = _FetchSlots(max_fetches, max_fetches_per_caller)

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def read(self, photo: Photo, *, tenant: str | None) -> bytes:
        """The photo's bytes (at most the image limit), or an AppError naming `photo.field`."""
        if photo.data is not None:
            return photo.data
        url = str(photo.url)
        if url.partition(":")[0].lower() == "s3":
            return await self._read_s3(url, photo.field, tenant)
        try:
            async with self._slots.hold(tenant):
                return await self.fetcher.fetch(url)
        except AppError as exc:
            details = {**(exc.details or {}), "field": photo.field}
            raise AppError(exc.status, exc.code, exc.message, details=details) from None

    async def read_each(self, photos: list[Photo], *, tenant: str | None) -> list[bytes | AppError]:
        """Every photo concurrently; a failure (the photo's, or the store's) is returned in its place."""

        async def one(photo: Photo) -> bytes | AppError:
            try:
                return await self.read(photo, tenant=tenant)
            except AppError as exc:
                return exc
            except StorageUnavailable as exc:
                return storage_unavailable(exc)

        return list(await asyncio.gather(*(one(p) for p in photos)))

    async def _read_s3(self, url: str, field: str, tenant: str | None) -> bytes:
        parts = urlsplit(url)
        bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
        if parts.query or parts.fragment or not key or key.endswith("/"):
            raise _error(422, "image_url_invalid", "s3:// URLs are s3://<bucket>/<key>", field)
        if bucket != self.bucket:
            raise _error(
                400, "image_url_forbidden", "s3:// URLs may only name the configured bucket", field, reason="bucket"
            )
        # Other tenants' images live in the same bucket: a request for a tenant reads only that tenant's images and
        # its part of the drop area (`_uploads/<tenant>/`); only a request for no tenant (an admin key) reads the
        # whole drop area. "." / ".." segments could step out of either.
        drop = self.drop_prefix
        allowed = [f"{drop}{tenant_prefix(tenant)}", tenant_prefix(tenant)] if tenant else [drop]
        if any(seg in ("", ".", "..") for seg in key.split("/")) or not any(key.startswith(p) for p in allowed):
            raise _error(
                400, "image_url_forbidden", f"s3:// keys must be under {' or '.join(allowed)}", field, reason="key"
            )
        try:
            # At most the limit plus one byte is read: an oversized object is refused without loading it.
            stored = await self.objects.get(key, max_bytes=self.max_bytes)
        except ObjectTooLarge:
            raise _error(413, "image_url_too_large", "the object is larger than the image limit", field) from None
        except ObjectNotFound:
            raise _error(
                422, "image_url_unreachable", "no such object in the store", field, upstream_status=404
            ) from None
        except ValueError:  # a key the store cannot hold (segment too long, ...): it cannot exist
            raise _error(422, "image_url_invalid", "not a valid object key", field) from None
        if len(stored.data) > self.max_bytes:
            raise _error(413, "image_url_too_large", "the object is larger than the image limit", field)
        if sniff_content_type(stored.data) == "application/octet-stream":
            raise _error(415, "image_url_not_image", "the object is not an image", field)
        return stored.data
