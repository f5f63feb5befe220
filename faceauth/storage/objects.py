"""Face images in an object store: the ObjectStore protocol and the key rules both stores share.

Keys look like ``tenant/face_id/revision``; both stores treat them as opaque strings with "/" in them. Every
failure of the store itself (down, slow, refusing the credentials, a full disk) surfaces as
`StorageUnavailable("objects", ...)`, which the Face API answers with a 503; a missing key is `ObjectNotFound`.
The stores: `faceauth.storage.s3.S3ObjectStore` (any S3 server, through the minio SDK) and
`faceauth.storage.local.LocalObjectStore` (a local folder).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str


class ObjectStore(Protocol):
    async def open(self) -> None:
        """Connect; create the bucket (or folder) if missing. Idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageUnavailable("objects", ...) when the store does not answer."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        """Raise ObjectNotFound when there is no such key; ObjectTooLarge when it holds more than `max_bytes`
        (reading at most that plus one byte of it)."""

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""

    async def presign(self, key: str, expires_s: int) -> str | None:
        """A URL anyone can GET the object from until it expires, or None when the store cannot make one (the
        Face API then serves a signed link itself)."""

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""


# Printable ASCII on one line: it goes into an HTTP header (S3) or a one-line file header (local).
_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")


def check_content_type(content_type: str) -> None:
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type {content_type!r}")


# -- keys ----------------------------------------------------------------------------------------------------
#
# Both stores accept the same keys: "/"-separated segments of at most 255 bytes each (a file name's limit, and
# MinIO's for one path segment), none empty, none starting with a dot (temporary files start with one).

_MAX_SEGMENT_BYTES = 255


def key_parts(key: str, *, what: str = "object key") -> list[str]:
    """The segments of `key`; ValueError for anything that could leave the root or be read as a stored name."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid {what} {key!r}")
    parts = key.split("/")
    # "", "." and ".." would escape or alias; a leading dot is reserved for temporary files.
    if any(not part or part.startswith(".") for part in parts):
        raise ValueError(f"invalid {what} {key!r}: empty, '.' or '..' segment, or one starting with '.'")
    if any(len(part.encode()) > _MAX_SEGMENT_BYTES for part in parts):
        raise ValueError(f"invalid {what} {key!r}: a segment is longer than {_MAX_SEGMENT_BYTES} bytes")
    return parts


def split_prefix(prefix: str) -> tuple[list[str], str]:
    """(the prefix's complete segments, its last and maybe partial segment), checked like a key's."""
    if not isinstance(prefix, str) or prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise ValueError(f"invalid prefix {prefix!r}")
    *folders, partial = prefix.split("/")
    return (key_parts("/".join(folders), what="prefix") if folders else []), partial


def op_name(fn: Callable[..., object]) -> str:
    """The metrics label of a store call: `_put_sync` -> "put" (a fixed, small set of names)."""
    return getattr(fn, "__name__", "call").removeprefix("_").removesuffix("_sync")
