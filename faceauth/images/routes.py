"""GET /v1/images/{token}: a stored image through a signed, expiring link (local object store only; on S3 the
links are the store's own presigned URLs). No API key: the link's signature is the permission."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from faceauth.images.service import ImageService
from faceauth.web.deps import provided
from faceauth.web.params import error

router = APIRouter(tags=["faces"])

ImageServiceDep = Annotated[ImageService, Depends(provided(ImageService))]


@router.get(
    "/v1/images/{token}",
    response_class=Response,
    summary="A stored face image, through a link from /v1/faces/image-url (valid until it expires)",
    responses={200: {"content": {"image/jpeg": {}}, "description": "the image"}, 404: error("link_invalid")},
)
async def linked_image(token: Annotated[str, Path(max_length=2048)], service: ImageServiceDep):
    image = await service.linked_image(token)
    # Private: a shared cache must not keep a face after the link expires. nosniff: the browser takes the type
    # as given (an image), never guesses HTML or script from the bytes of a stored "photo".
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    return Response(image.data, media_type=image.content_type, headers=headers)
