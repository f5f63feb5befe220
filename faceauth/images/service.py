"""Links to stored face images, and the images those links grant."""

from __future__ import annotations

from faceauth.images.links import ImageLinks
from faceauth.kit.errors import AppError
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.objects import ObjectStore, StoredObject


class ImageService:
    def __init__(self, links: ImageLinks, objects: ObjectStore, *, link_seconds: int) -> None:
        self.links = links
        self.objects = objects
        self.link_seconds = link_seconds

    async def link(self, object_key: str, base_url: str) -> tuple[str, int]:
        """A URL of the stored image that expires after FACEAUTH_IMAGE_LINK_SECONDS, and its expiry (unix s)."""
        return await self.links.link(object_key, self.link_seconds, base_url)

    async def linked_image(self, token: str) -> StoredObject:
        """The image a link grants; 404 for an invalid or expired link or an image that is gone."""
        try:
            return await self.objects.get(await self.links.open(token))
        except ObjectNotFound:
            raise AppError(404, "link_invalid", "the image link is invalid or has expired") from None
