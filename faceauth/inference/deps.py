"""Typed dependency aliases for the ML service's routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from faceauth.config import MLSettings
from faceauth.inference.service import InferenceService
from faceauth.kit.bodies import read_image_payload
from faceauth.kit.errors import AppError


def _settings(request: Request) -> MLSettings:
    return request.app.state.settings


def _service(request: Request) -> InferenceService:
    return request.app.state.service


def _check_internal_token(request: Request) -> None:
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


SettingsDep = Annotated[MLSettings, Depends(_settings)]
ServiceDep = Annotated[InferenceService, Depends(_service)]
# The photo's bytes, or its base64 text (decoded later, in a worker thread).
ImagePayload = Annotated[bytes | str, Depends(_image_payload)]
InternalAuth = Depends(_check_internal_token)
