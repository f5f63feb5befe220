"""Request parameters and documented error answers shared by the Face API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Path, Query

from faceauth.contracts.ids import FACE_ID_MAX, ID_DOC, ID_PATTERN, TENANT_DOC, TENANT_MAX
from faceauth.kit.errors import ErrorResponse

FaceIdForm = Annotated[str, Form(description=ID_DOC, pattern=ID_PATTERN, max_length=FACE_ID_MAX)]
FaceIdQuery = Annotated[str, Query(description=ID_DOC, pattern=ID_PATTERN, max_length=FACE_ID_MAX)]
FaceIdPath = Annotated[str, Path(description=ID_DOC, pattern=ID_PATTERN, max_length=FACE_ID_MAX)]
SubjectIdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=FACE_ID_MAX, description="the subject id")]
# Optional: a tenant key implies its own tenant; an admin key names the one it acts for.
TenantForm = Annotated[
    str | None,
    Form(description=f"{TENANT_DOC}; default: the API key's own tenant", pattern=ID_PATTERN, max_length=TENANT_MAX),
]
TenantQuery = Annotated[
    str | None,
    Query(description=f"{TENANT_DOC}; default: the API key's own tenant", pattern=ID_PATTERN, max_length=TENANT_MAX),
]
TenantPath = Annotated[str, Path(description=TENANT_DOC, pattern=ID_PATTERN, max_length=TENANT_MAX)]
AlignedForm = Annotated[
    bool,
    Form(description="the photo is an already-cropped face: no detection, resized to 112x112 (anti-spoof skipped)"),
]


def error(description: str) -> dict:
    """An OpenAPI `responses` entry with the error body."""
    return {"model": ErrorResponse, "description": description}


# Every route that needs an API key (added to each router by the app).
ACCESS_ERRORS = {
    401: error("unauthorized / invalid_api_key: no API key, or an unknown or revoked one"),
    403: error("forbidden: the key's tenant is not the one the request names (or an admin key is needed)"),
    429: error("rate_limited: this key's token bucket is empty; see Retry-After"),
}
COMMON_ERRORS = {
    413: error("the image is larger than FACEAUTH_MAX_IMAGE_BYTES"),
    503: error("the ML service, Milvus or the object store is unavailable: nothing was written"),
}
# Photos given by URL (image_url and the like).
URL_ERRORS = (
    "image_url_invalid (422), image_url_forbidden (400: a loopback/private/metadata address or a key outside "
    "the allowed prefixes), image_url_unreachable (422), image_url_too_large (413), image_url_not_image (415), "
    "image_url_too_many_redirects (422)"
)
# Routes that take photos (uploads, base64 or URLs).
PHOTO_ERRORS = {
    **COMMON_ERRORS,
    400: error(f"empty_image, invalid_base64, a body that cannot be parsed; {URL_ERRORS}"),
    415: error("image_url_not_image: what the image URL answered is not an image"),
}
