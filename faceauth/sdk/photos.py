"""What the SDK accepts as a photo, and how each is sent: a file part, a base64 field or a URL field.

A photo is a path (`str` or `Path`), `bytes`, a binary file object, a URL (``http(s)://`` or the tenant's
``s3://`` drop area) or base64. A string is a URL when it has a scheme, a path when such a file exists, else
base64; wrap it in `Base64` or `Url` to say which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

_URL_SCHEMES = ("http://", "https://", "s3://")


class Base64(str):
    """A photo given as base64 text (a ``data:`` URL is fine)."""


class Url(str):
    """A photo the Face API downloads: ``http(s)://`` or ``s3://`` (the tenant's own drop area)."""


PhotoInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo ready to send: its bytes (a file part), or a text value (base64 or a URL)."""

    kind: Literal["file", "b64", "url"]
    content: bytes | str
    filename: str = "photo.jpg"


def prepare(photo: PhotoInput) -> PreparedPhoto:
    if isinstance(photo, Url):
        return PreparedPhoto("url", str(photo))
    if isinstance(photo, Base64):
        return PreparedPhoto("b64", str(photo))
    if isinstance(photo, bytes | bytearray | memoryview):
        return PreparedPhoto("file", bytes(photo))
    if isinstance(photo, os.PathLike):
        path = Path(photo)
        return PreparedPhoto("file", path.read_bytes(), path.name)
    if isinstance(photo, str):
        if photo.startswith(_URL_SCHEMES):
            return PreparedPhoto("url", photo)
        if photo.startswith("data:"):
            return PreparedPhoto("b64", photo)
        # A path is short and has no newline; anything else is base64 (a photo's base64 is kilobytes long).
        if len(photo) < 4096 and "\n" not in photo and Path(photo).is_file():
            return PreparedPhoto("file", Path(photo).read_bytes(), Path(photo).name)
        if len(photo) < 256:
            raise FileNotFoundError(f"no such photo file: {photo!r} (wrap base64 text in faceauth.sdk.Base64)")
        return PreparedPhoto("b64", photo)
    read = getattr(photo, "read", None)
    if callable(read):
        data = read()
        if not isinstance(data, bytes):
            raise TypeError("open the photo file in binary mode ('rb')")
        return PreparedPhoto("file", data, Path(str(getattr(photo, "name", "photo.jpg"))).name or "photo.jpg")
    raise TypeError(f"a photo is a path, bytes, a binary file, a URL or base64, not {type(photo).__name__}")


Fields = list[tuple[str, str]]
Files = list[tuple[str, tuple[str, bytes, str]]]


def add_photo(photo: PhotoInput, names: tuple[str, str, str], data: Fields, files: Files) -> None:
    """Add one photo under the route's field names for (file, base64, url)."""
    prepared = prepare(photo)
    file_field, b64_field, url_field = names
    if prepared.kind == "file":
        files.append((file_field, (prepared.filename, prepared.content, "application/octet-stream")))  # type: ignore[arg-type]
    else:
        data.append((b64_field if prepared.kind == "b64" else url_field, str(prepared.content)))
