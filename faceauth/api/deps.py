"""Typed dependency aliases for the Face API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Request, UploadFile

from faceauth.config import APISettings
from faceauth.faces.service import FaceService
from faceauth.kit.errors import AppError
from faceauth.kit.requests import get_request_id


def _settings(request: Request) -> APISettings:
    return request.app.state.settings


def _face_service(request: Request) -> FaceService:
    return request.app.state.face_service


def _request_id(request: Request) -> str:
    return get_request_id(request)


async def _image(request: Request, file: Annotated[UploadFile, File(description="JPEG/PNG/WebP photo")]) -> bytes:
    limit = request.app.state.settings.max_image_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise AppError(413, "payload_too_large", f"the image is larger than {limit} bytes")
    if not data:
        raise AppError(400, "empty_image", "the uploaded file is empty")
    return data


SettingsDep = Annotated[APISettings, Depends(_settings)]
FaceServiceDep = Annotated[FaceService, Depends(_face_service)]
RequestIdDep = Annotated[str, Depends(_request_id)]
# The uploaded photo (multipart field `file`), size-checked.
ImageDep = Annotated[bytes, Depends(_image)]
