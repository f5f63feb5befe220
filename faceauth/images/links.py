"""Short-lived links to stored face images.

On S3 the store presigns them. The local folder has no URLs, so the Face API signs a link to itself instead: an
HMAC over (object key, expiry) with a secret kept in the store, checked by `GET /v1/images/{token}`, which needs no
API key (the signature is the permission) and works only until the expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time

from faceauth.kit.errors import AppError
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.objects import ObjectStore

SECRET_KEY = "_secrets/image-links"
LINK_PATH = "/v1/images/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ImageLinks:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._secret: bytes | None = None

    async def _key(self) -> bytes:
        if self._secret is None:
            try:
                self._secret = (await self.objects.get(SECRET_KEY)).data
            except ObjectNotFound:
                # First use. Two replicas racing here both write; the last write wins and links signed with the
                # other secret fail their check (the caller asks for a new link): harmless.
                self._secret = secrets.token_bytes(32)
                await self.objects.put(SECRET_KEY, self._secret, "application/octet-stream")
        return self._secret

    async def link(self, object_key: str, expires_s: int, base_url: str) -> tuple[str, int]:
        """A URL for the image and its expiry (unix seconds): presigned by the store, else signed here."""
        expires_at = int(time.time()) + expires_s
        presigned = await self.objects.presign(object_key, expires_s)
        if presigned:
            return presigned, expires_at
        claims = _b64(json.dumps({"k": object_key, "e": expires_at}, separators=(",", ":")).encode())
        signature = _b64(hmac.new(await self._key(), claims.encode(), hashlib.sha256).digest())
        return f"{base_url.rstrip('/')}{LINK_PATH}{claims}.{signature}", expires_at

    async def open(self, token: str) -> str:
        """The object key a token grants, or 404 (an invalid, tampered or expired link says no more than that)."""
        denied = AppError(404, "link_invalid", "the image link is invalid or has expired")
        claims, _, signature = token.partition(".")
        try:
            expected = hmac.new(await self._key(), claims.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise denied
            body = json.loads(_unb64(claims))
        except (binascii.Error, ValueError):
            raise denied from None
        if not isinstance(body, dict) or not isinstance(body.get("k"), str) or int(body.get("e", 0)) < time.time():
            raise denied
        return body["k"]
