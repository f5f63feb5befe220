"""Typed dependency aliases for the Face API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Form, Request, Security, UploadFile
from fastapi.security import APIKeyHeader, HTTPBearer

from faceauth.auth.middleware import Principal
from faceauth.clustering.service import ClusterService
from faceauth.config import APISettings
from faceauth.faces.service import FaceService
from faceauth.images.sources import ImageSource
from faceauth.kit.errors import AppError
from faceauth.kit.requests import get_request_id
from faceauth.subjects.service import SubjectService
from faceauth.tenants.service import TenantService
from faceauth.verification.service import VerificationService

# Dependencies are `async def` even when they only read state: FastAPI runs a plain `def` dependency in a worker
# thread, a thread hop per dependency per request for a dictionary lookup.


async def _settings(request: Request) -> APISettings:
    return request.app.state.settings


def _service(name: str):
    async def get(request: Request):
        return getattr(request.app.state, name)

    return get


async def _request_id(request: Request) -> str:
    return get_request_id(request)


# Declared for the OpenAPI document (Swagger's "Authorize"); the key itself is checked by AuthMiddleware before
# the body is read.
_api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, description="fa_... (or Authorization: Bearer fa_...)")
_bearer = HTTPBearer(auto_error=False)


async def _principal(
    request: Request, api_key: str | None = Security(_api_key), bearer: object = Security(_bearer)
) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:  # a route outside AuthMiddleware's reach: refuse rather than guess
        raise AppError(401, "unauthorized", "send an API key (X-Api-Key or Authorization: Bearer)")
    return principal


async def read_upload(request: Request, upload: UploadFile, field: str) -> ImageSource:
    """An uploaded file as an ImageSource, read up to the image limit (413 beyond it, 400 when empty)."""
    limit = request.app.state.settings.max_image_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise AppError(413, "payload_too_large", f"the image is larger than {limit} bytes", details={"field": field})
    if not data:
        raise AppError(400, "empty_image", "the uploaded file is empty", details={"field": field})
    return ImageSource(field, data=data)


Named = tuple[str, object]  # (request field name, its value or None)


async def one_image(request: Request, upload: Named, b64: Named, url: Named, *, required: bool) -> ImageSource | None:
    """The one photo sent as an upload, as base64 text or as a URL (each under its own field name)."""
    given = [name for name, value in (upload, b64, url) if value]
    if len(given) > 1:
        raise AppError(422, "ambiguous_image", f"send the photo once, not as {' and '.join(given)}")
    if upload[1]:
        return await read_upload(request, upload[1], upload[0])  # type: ignore[arg-type]
    if b64[1]:
        return ImageSource(b64[0], b64=str(b64[1]))
    if url[1]:
        return ImageSource(url[0], url=str(url[1]))
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


async def _image(
    request: Request,
    file: Annotated[UploadFile | None, File(description="the photo (JPEG/PNG/WebP/BMP/TIFF/GIF)")] = None,
    image_b64: Annotated[str | None, Form(description="or: the photo as base64 (a data: URL is fine)")] = None,
    image_url: Annotated[
        str | None, Form(description="or: an http(s):// URL of the photo, or s3://<bucket>/<key> of the store")
    ] = None,
) -> ImageSource:
    source = await one_image(request, ("file", file), ("image_b64", image_b64), ("image_url", image_url), required=True)
    assert source is not None
    return source


SettingsDep = Annotated[APISettings, Depends(_settings)]
FaceServiceDep = Annotated[FaceService, Depends(_service("face_service"))]
SubjectServiceDep = Annotated[SubjectService, Depends(_service("subject_service"))]
TenantServiceDep = Annotated[TenantService, Depends(_service("tenant_service"))]
VerificationServiceDep = Annotated[VerificationService, Depends(_service("verification_service"))]
ClusterServiceDep = Annotated[ClusterService, Depends(_service("cluster_service"))]
RequestIdDep = Annotated[str, Depends(_request_id)]
# The caller (its API key's tenant); routes pass every tenant they act on through `principal.scope(tenant)`.
PrincipalDep = Annotated[Principal, Depends(_principal)]
# The photo of a request: multipart `file`, or form field `image_b64` or `image_url`. Not loaded yet (URLs are
# fetched by the service, which knows the tenant).
ImageDep = Annotated[ImageSource, Depends(_image)]
