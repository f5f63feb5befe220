"""Where photos enter the Face API: every input check is made here, once, and routes hand services typed `Photo`s.

A photo comes as an upload, as base64 text or as a URL, each under its own field name. Uploads are read up to the
image limit (413 beyond it, 400 when empty), base64 is decoded with the same limit (400 when it is not base64), a
URL must be http(s):// or s3:// (it is downloaded later, by the loader, which knows the tenant). Every error names
the field.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, File, Form, UploadFile

from faceauth.kit.bodies import decode_base64_image, read_capped
from faceauth.kit.errors import AppError
from faceauth.photos.sources import Photo
from faceauth.web.deps import SettingsDep


async def from_upload(upload: UploadFile, field: str, limit: int) -> Photo:
    return Photo(field, data=await read_capped(upload, limit, field=field))


async def from_base64(text: str, field: str, limit: int) -> Photo:
    # Decoding megabytes of base64 takes milliseconds: off the event loop.
    return Photo(field, data=await asyncio.to_thread(decode_base64_image, text, limit, field=field))


async def mixed_photos(
    limit: int, uploads: tuple[str, list[UploadFile]], texts: tuple[str, list[str]], urls: tuple[str, list[str]]
) -> list[Photo]:
    """Photos sent in any mix of the three forms, in that order, each named `<field>[<i>]`."""
    (upload_field, files), (b64_field, b64s), (url_field, links) = uploads, texts, urls
    photos = [await from_upload(f, f"{upload_field}[{i}]", limit) for i, f in enumerate(files)]
    photos += [await from_base64(t, f"{b64_field}[{i}]", limit) for i, t in enumerate(b64s)]
    photos += [Photo.from_url(f"{url_field}[{i}]", u) for i, u in enumerate(links)]
    return photos


Named = tuple[str, object]  # (request field name, its value or None)


async def one_photo(limit: int, upload: Named, b64: Named, url: Named, *, required: bool) -> Photo | None:
    """The one photo sent as an upload, as base64 text or as a URL (each under its own field name)."""
    given = [name for name, value in (upload, b64, url) if value]
    if len(given) > 1:
        raise AppError(422, "ambiguous_image", f"send the photo once, not as {' and '.join(given)}")
    if upload[1]:
        return await from_upload(upload[1], upload[0], limit)  # type: ignore[arg-type]
    if b64[1]:
        return await from_base64(str(b64[1]), b64[0], limit)
    if url[1]:
        return Photo.from_url(url[0], str(url[1]))
    if required:
        # The code a missing `file` had before base64 and URLs were accepted, so clients keep working.
        names = [name for name, _ in (upload, b64, url)]
        raise AppError(
            422,
            "validation_error",
            f"send a photo in one of the fields: {', '.join(names)}",
            details={"errors": [{"loc": ["body", upload[0]], "msg": "Field required", "type": "missing"}]},
        )
    return None


async def batch_photos(
    limit: int, files: list[UploadFile], images_b64: list[str], image_urls: list[str], count: int
) -> list[Photo | AppError]:
    """The photos of a batch, all sent in one of the three forms, one per item. An upload that cannot be read
    fails the request; bad base64 or a bad URL fails its own item only (as its download would)."""
    given = [
        name for name, values in (("files", files), ("images_b64", images_b64), ("image_urls", image_urls)) if values
    ]
    if len(given) != 1:
        raise AppError(422, "image_missing", "send the photos in exactly one of: files, images_b64, image_urls")
    name = given[0]
    sent = len(files or images_b64 or image_urls)
    if sent != count:
        raise AppError(422, "batch_mismatch", f"{count} ids but {sent} {name}: send one photo per id")
    if files:
        return [await from_upload(f, f"files[{i}]", limit) for i, f in enumerate(files)]
    photos: list[Photo | AppError] = []
    for i, value in enumerate(images_b64 or image_urls):
        try:
            if images_b64:
                photos.append(await from_base64(value, f"images_b64[{i}]", limit))
            else:
                photos.append(Photo.from_url(f"image_urls[{i}]", value))
        except AppError as exc:
            photos.append(exc)
    return photos


async def _photo(
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File(description="the photo (JPEG/PNG/WebP/BMP/TIFF/GIF)")] = None,
    image_b64: Annotated[str | None, Form(description="or: the photo as base64 (a data: URL is fine)")] = None,
    image_url: Annotated[
        str | None, Form(description="or: an http(s):// URL of the photo, or s3://<bucket>/<key> of the store")
    ] = None,
) -> Photo:
    photo = await one_photo(
        settings.max_image_bytes, ("file", file), ("image_b64", image_b64), ("image_url", image_url), required=True
    )
    assert photo is not None
    return photo


# The photo of a request: multipart `file`, or form field `image_b64` or `image_url`, checked (not downloaded yet).
PhotoDep = Annotated[Photo, Depends(_photo)]
