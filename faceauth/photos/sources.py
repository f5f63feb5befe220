"""A photo of a request, after the input checks and before it is read."""

from __future__ import annotations

from dataclasses import dataclass

from faceauth.kit.errors import AppError

URL_SCHEMES = ("http", "https", "s3")


@dataclass(frozen=True)
class Photo:
    """One photo of a request: its bytes (an upload or decoded base64, within the size limit) or its URL
    (http(s):// or s3://, downloaded by the loader, which knows the tenant). `field` names the request field it
    came from, e.g. `file` or `probes_url[1]`: every error about the photo points at it."""

    field: str
    data: bytes | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("a Photo holds exactly one of data, url")

    @classmethod
    def from_url(cls, field: str, url: str) -> Photo:
        if url.partition(":")[0].lower() not in URL_SCHEMES:
            raise AppError(422, "image_url_invalid", "image URLs must be http(s):// or s3://", details={"field": field})
        return cls(field, url=url)
