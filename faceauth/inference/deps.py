"""Typed dependency aliases for the ML service's routes."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from starlette.datastructures import UploadFile

from faceauth.config import MLSettings
from faceauth.inference.service import InferenceService
from faceauth.kit.bodies import BodyTooLarge, read_capped, read_image_payload
from faceauth.kit.errors import AppError

# `async def` although they only read state: FastAPI runs a plain `def` dependency in a worker thread (a
# thread hop per dependency per request).


async def _settings(request: Request) -> MLSettings:
    return request.app.state.settings


async def _service(request: Request) -> InferenceService:
    return request.app.state.service


async def _check_internal_token(request: Request) -> None:
    """When ML_SERVICE_AUTH_TOKEN is set, only callers holding it (the Face API) may use /v1/*."""
    token = request.app.state.settings.auth_token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-internal-token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise AppError(
            401, "unauthorized", "a valid internal token is required", headers={"WWW-Authenticate": "Bearer"}
        )


async def _image_payload(request: Request) -> bytes | str:
    return await read_image_payload(request, request.app.state.settings.max_image_bytes)


BATCH_FIELD = "files"


async def _batch_files(request: Request) -> list[bytes | AppError]:
    """The `files` parts of a multipart body: each file's bytes, or the error that refuses that file alone."""
    settings: MLSettings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise AppError(
            415, "unsupported_media_type", f"send multipart/form-data with one '{BATCH_FIELD}' part per image"
        )
    too_many = AppError(413, "batch_too_large", f"at most {settings.max_batch} images per request")
    try:
        form = await request.form(max_files=settings.max_batch, max_fields=16)
    except BodyTooLarge:
        raise
    except Exception as exc:
        # Starlette stops parsing at the first file past max_files and says so only in its message.
        if str(getattr(exc, "detail", exc)).startswith("Too many files"):
            raise too_many from None
        raise AppError(400, "invalid_multipart", "the multipart body cannot be parsed") from None
    try:
        parts = form.getlist(BATCH_FIELD)
        if not parts:
            raise AppError(422, "validation_error", f"the multipart body needs one or more '{BATCH_FIELD}' parts")
        if len(parts) > settings.max_batch:
            raise too_many
        if not all(isinstance(part, UploadFile) for part in parts):
            # A malformed request, not a bad image: refused whole, like a missing part.
            raise AppError(422, "validation_error", f"every '{BATCH_FIELD}' part must be a file (with a filename)")
        files: list[bytes | AppError] = []
        for part in parts:
            try:
                files.append(await read_capped(part, settings.max_image_bytes))  # type: ignore[arg-type]
            except AppError as exc:  # this file alone is refused (too large, empty)
                files.append(exc)
        return files
    finally:
        await form.close()


SettingsDep = Annotated[MLSettings, Depends(_settings)]
ServiceDep = Annotated[InferenceService, Depends(_service)]
# The photo's bytes, or its base64 text (decoded later, in a worker thread).
ImagePayload = Annotated[bytes | str, Depends(_image_payload)]
BatchFiles = Annotated[list[bytes | AppError], Depends(_batch_files)]
Aligned = Annotated[
    bool,
    Query(description="true: the image is already a cropped face (no detection, no anti-spoof; see the endpoint)."),
]
FacesQuery = Annotated[
    Literal["largest", "all"],
    Query(
        description="largest: the subject face only (as always); all: also every face at least "
        "ML_SERVICE_FACE_AREA_THRESHOLD of the photo, largest first, at most ML_SERVICE_MAX_FACES, each "
        "checked and embedded in the same pass (`faces`)."
    ),
]
InternalAuth = Depends(_check_internal_token)
