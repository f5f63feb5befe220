"""Request parameters and documented error answers shared by the Face API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query

from faceauth.faces.schemas import FACE_ID_MAX, ID_PATTERN, TENANT_MAX, ErrorResponse

ID_DOC = f"letters, digits and . _ : @ - (first a letter or digit), at most {FACE_ID_MAX} characters"
TENANT_DOC = f"tenant namespace: same characters as ids, at most {TENANT_MAX}"

FaceIdForm = Annotated[str, Form(description=ID_DOC, pattern=ID_PATTERN, max_length=FACE_ID_MAX)]
TenantForm = Annotated[str, Form(description=TENANT_DOC, pattern=ID_PATTERN, max_length=TENANT_MAX)]
TenantQuery = Annotated[str, Query(description=TENANT_DOC, pattern=ID_PATTERN, max_length=TENANT_MAX)]
AlignedForm = Annotated[
    bool,
    Form(description="the photo is an already-cropped face: no detection, resized to 112x112 (anti-spoof skipped)"),
]


def error(description: str) -> dict:
    """An OpenAPI `responses` entry with the error body."""
    return {"model": ErrorResponse, "description": description}


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
