"""Face images in an object store: S3 (any S3 server, through the minio SDK) or a local folder.

Keys look like ``tenant/face_id/revision``; both stores treat them as opaque strings with "/" in them. Every
failure of the store itself (down, slow, refusing the credentials, a full disk) surfaces as
`StorageUnavailable("objects", ...)`, which the Face API answers with a 503; a missing key is `ObjectNotFound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import MAX_PART_SIZE, check_bucket_name
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from faceauth.kit.metrics import NULL_OBSERVER, StoreObserver, timed_store_call
from faceauth.storage.errors import ObjectNotFound, StorageUnavailable

if TYPE_CHECKING:
    from faceauth.config import APISettings

T = TypeVar("T")


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

    async def get(self, key: str) -> StoredObject:
        """Raise ObjectNotFound when there is no such key."""

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""

    async def presign(self, key: str, expires_s: int) -> str | None:
        """A URL anyone can GET the object from until it expires, or None when the store cannot make one (the
        Face API then serves a signed link itself)."""

    async def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""


def open_object_store(settings: APISettings) -> ObjectStore:
    """The store `settings.object_store` names, not yet opened (the caller awaits `open()`, with retries)."""
    if settings.object_store == "s3":
        return S3ObjectStore(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key,
            settings.minio_bucket,
            secure=settings.minio_secure,
            region=settings.minio_region,
            connect_timeout=settings.minio_connect_timeout_seconds,
            timeout=settings.minio_timeout_seconds,
            retries=settings.minio_retries,
            max_connections=settings.minio_max_connections,
            public_url=settings.minio_public_url,
        )
    return LocalObjectStore(settings.resolved_local_store_dir)


# Printable ASCII on one line: it goes into an HTTP header (S3) or a one-line file header (local).
_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")


def _check_content_type(content_type: str) -> None:
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type {content_type!r}")


# -- keys ----------------------------------------------------------------------------------------------------
#
# Both stores accept the same keys: "/"-separated segments of at most 255 bytes each (a file name's limit, and
# MinIO's for one path segment), none empty, none starting with a dot (temporary files start with one).

_MAX_SEGMENT_BYTES = 255


def _key_parts(key: str, *, what: str = "object key") -> list[str]:
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


def _split_prefix(prefix: str) -> tuple[list[str], str]:
    """(the prefix's complete segments, its last and maybe partial segment), checked like a key's."""
    if not isinstance(prefix, str) or prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise ValueError(f"invalid prefix {prefix!r}")
    *folders, partial = prefix.split("/")
    return (_key_parts("/".join(folders), what="prefix") if folders else []), partial


# -- S3 ------------------------------------------------------------------------------------------------------

# S3 error codes that mean "these credentials are wrong or not allowed", as opposed to the server failing.
_CREDENTIAL_ERRORS = frozenset(
    {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
)
_BUCKET_CREATED_ELSEWHERE = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class S3ObjectStore:
    """A bucket on an S3 server (MinIO, SeaweedFS, AWS ...), through the synchronous minio SDK.

    SDK calls run on a small thread pool so they never block the event loop. Connections come from one urllib3
    pool with short timeouts and few retries; a pooled connection that the server dropped is replaced on its
    next use, so the same instance works again once a restarted server is back.
    """

    # The Face API points this at its metrics (call latency and errors); a no-op otherwise.
    observer: StoreObserver = NULL_OBSERVER

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        connect_timeout: float = 3.0,
        timeout: float = 20.0,
        retries: int = 2,
        max_connections: int = 16,
        public_url: str | None = None,
    ) -> None:
        check_bucket_name(bucket, strict=True)  # a bad name is a configuration error: fail at start-up
        self.endpoint = endpoint
        self.bucket = bucket
        self._region = region
        self._max_workers = max_connections
        self._executor: ThreadPoolExecutor | None = None
        self._http = _pool_manager(
            connect_timeout,
            timeout,
            max_connections,
            urllib3.Retry(
                total=retries,
                connect=retries,
                # A read timeout means the server is stuck: retrying would only double the wait.
                read=0,
                status=retries,
                other=0,
                backoff_factor=0.2,
                backoff_max=2.0,
                status_forcelist=(500, 502, 503, 504),
                # Hand the last 5xx to minio, whose error then names the server's own code and message.
                raise_on_status=False,
                # A "Retry-After: 3600" must not hold the request for an hour.
                respect_retry_after_header=False,
            ),
        )
        # Readiness probes answer now or never: the short timeout for reading too, and no retries.
        self._ping_http = _pool_manager(connect_timeout, connect_timeout, 4, urllib3.Retry(total=0))
        credentials = {"access_key": access_key, "secret_key": secret_key, "secure": secure, "region": region}
        self._client = Minio(endpoint, **credentials, http_client=self._http)
        self._ping_client = Minio(endpoint, **credentials, http_client=self._ping_http)
        # Presigned links name the host clients reach (a signature covers the host), when that differs from ours.
        self._link_client = self._client
        if public_url:
            public = urlsplit(public_url)
            # A region is required to sign without asking the server (MinIO's default region unless configured).
            link_credentials = {**credentials, "secure": public.scheme == "https", "region": region or "us-east-1"}
            self._link_client = Minio(public.netloc, **link_credentials)

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=self._region)
        except S3Error as exc:
            # Another API replica may have created it between our check and our create.
            if exc.code not in _BUCKET_CREATED_ELSEWHERE or not self._client.bucket_exists(self.bucket):
                raise

    async def close(self) -> None:
        self._http.clear()
        self._ping_http.clear()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def ping(self) -> None:
        await self._run(self._ping_sync)

    def _ping_sync(self) -> None:
        if not self._ping_client.bucket_exists(self.bucket):
            raise StorageUnavailable("objects", f"bucket {self.bucket!r} does not exist on {self.endpoint}")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_content_type(content_type)
        await self._run(self._put_sync, _object_name(key), data, content_type)

    def _put_sync(self, name: str, data: bytes, content_type: str) -> None:
        # One part up to 5 GiB: a single PUT, which urllib3 may safely retry (a multipart upload is not).
        self._client.put_object(
            self.bucket, name, io.BytesIO(data), len(data), content_type=content_type, part_size=MAX_PART_SIZE
        )

    async def get(self, key: str) -> StoredObject:
        return await self._run(self._get_sync, _object_name(key), key)

    def _get_sync(self, name: str, key: str) -> StoredObject:
        try:
            response = self._client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise ObjectNotFound(key) from None
            raise
        try:
            data = response.read()
            content_type = response.headers.get("Content-Type") or "application/octet-stream"
        finally:
            response.close()
            response.release_conn()
        return StoredObject(data, content_type)

    async def delete(self, key: str) -> None:
        await self._run(self._delete_sync, _object_name(key))

    async def presign(self, key: str, expires_s: int) -> str | None:
        return await self._run(self._presign_sync, _object_name(key), expires_s)

    def _presign_sync(self, name: str, expires_s: int) -> str:
        # Signed locally (no request), for the public address when one is configured.
        return self._link_client.presigned_get_object(self.bucket, name, expires=timedelta(seconds=expires_s))

    def _delete_sync(self, name: str) -> None:
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as exc:
            # S3 answers 204 for a missing key; some servers say NoSuchKey instead.
            if exc.code != "NoSuchKey":
                raise

    async def list(self, prefix: str) -> list[str]:
        _split_prefix(prefix)
        return await self._run(self._list_sync, prefix)

    def _list_sync(self, prefix: str) -> list[str]:
        objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
        return sorted(obj.object_name for obj in objects if obj.object_name and not obj.is_dir)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="s3-objects")
        with timed_store_call(self.observer, "objects", _op_name(fn), (StorageUnavailable,)):
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, contextvars.copy_context().run, partial(fn, *args)
                )
            # ParseError: a server that is not S3 answered 200 with something other than XML.
            except (MinioException, HTTPError, OSError, ET.ParseError) as exc:
                raise StorageUnavailable("objects", self._describe(exc)) from exc

    def _describe(self, exc: Exception) -> str:
        where = f"S3 at {self.endpoint}"
        if isinstance(exc, S3Error):
            if exc.code in _CREDENTIAL_ERRORS:
                return (
                    f"{where} refused the credentials ({exc.code}: {exc.message}); check the access key and "
                    f"secret key (FACEAUTH_MINIO_ACCESS_KEY / FACEAUTH_MINIO_SECRET_KEY) and their permissions"
                )
            if exc.code == "NoSuchBucket":
                return f"bucket {self.bucket!r} does not exist on {where}"
            return f"{where} answered {exc.code}: {exc.message}"
        if isinstance(exc, ServerError):
            return f"{where} answered HTTP {exc.status_code}"
        if isinstance(exc, InvalidResponseError):
            return f"{where} sent a response that is not S3's: {str(exc)[:200]}"
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        # NewConnectionError subclasses ConnectTimeoutError, so it goes first.
        if isinstance(exc, NewConnectionError):
            # Its message starts with the connection object's repr; the OS error is what matters.
            cause = exc.__cause__ or exc.__context__ or exc
            return f"cannot connect to {where}: {getattr(cause, 'strerror', None) or cause}"
        if isinstance(exc, ConnectTimeoutError):
            return f"cannot connect to {where}: timed out"
        if isinstance(exc, ReadTimeoutError):
            return f"{where} did not answer in time"
        if isinstance(exc, ProtocolError):
            return f"{where} dropped the connection: {exc}"
        return f"{where} failed: {type(exc).__name__}: {exc}"


def _object_name(key: str) -> str:
    _key_parts(key)
    return key


def _pool_manager(connect: float, read: float, maxsize: int, retries: urllib3.Retry) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read),
        maxsize=maxsize,
        retries=retries,
        # As minio's own default; it only matters with minio_secure (https).
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


# -- a local folder ------------------------------------------------------------------------------------------

# Each file starts with this line and a line holding the content type, then the bytes as stored: one file per
# object, so one atomic rename publishes the bytes and their content type together.
_MAGIC = b"faceauth-object 1\n"


class LocalObjectStore:
    """Objects as files under `root` (``root/tenant/face_id/revision``).

    A put writes a temporary file next to the target, fsyncs it and renames it over the target, so a crash
    leaves either the old object or the new one, never part of one. Temporary files start with a dot, which
    no key segment may, so get() and list() never see them.
    """

    # The Face API points this at its metrics (call latency and errors); a no-op otherwise.
    observer: StoreObserver = NULL_OBSERVER

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    async def open(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._ping_sync()

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        await self._run(self._ping_sync)

    def _ping_sync(self) -> None:
        self._require_root()
        # Writing is the only reliable test (permissions, read-only mounts, a full disk).
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".ping-")
        try:
            os.write(fd, b"ping")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_content_type(content_type)
        await self._run(self._put_sync, self._path(key), key, data, content_type)

    def _put_sync(self, path: Path, key: str, data: bytes, content_type: str) -> None:
        try:
            fd, tmp = self._temp_file(path)
        except (FileExistsError, NotADirectoryError):
            self._require_root()  # else the store is broken, not the key
            raise ValueError(f"object key {key!r} runs through an existing object") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + content_type.encode("ascii") + b"\n")
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, IsADirectoryError):
                raise ValueError(f"object key {key!r} is a prefix of other objects") from None
            raise
        _fsync_dir(path.parent)  # makes the rename itself durable

    def _temp_file(self, path: Path) -> tuple[int, str]:
        for attempt in range(3):
            self._make_dirs(path.parent)
            try:
                return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except FileNotFoundError:
                # A concurrent delete removed the folder once it was empty, between our mkdir and now.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_key_parts(key))

    def _require_root(self) -> None:
        # open() makes the root. A missing one may be an unmounted volume: not a place to write into, and not a
        # store that is empty (the Face API would take "no images" as "these faces are incomplete").
        if not self.root.is_dir():
            raise StorageUnavailable("objects", f"{self.root} is missing or not a folder")

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while not folder.is_dir():
            if folder == self.root:
                self._require_root()
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                new.mkdir()
            _fsync_dir(new.parent)

    async def get(self, key: str) -> StoredObject:
        return await self._run(self._get_sync, self._path(key), key)

    def _get_sync(self, path: Path, key: str) -> StoredObject:
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._require_root()
            raise ObjectNotFound(key) from None
        end = raw.find(b"\n", len(_MAGIC))
        if not raw.startswith(_MAGIC) or end < 0:
            raise StorageUnavailable("objects", f"{path} is not an object file written by this store")
        return StoredObject(raw[end + 1 :], raw[len(_MAGIC) : end].decode("ascii"))

    async def delete(self, key: str) -> None:
        await self._run(self._delete_sync, self._path(key))

    async def presign(self, key: str, expires_s: int) -> str | None:
        return None  # files have no URL of their own: the Face API serves a signed link

    def _delete_sync(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._require_root()
            return  # no such object (a folder is a prefix, not an object)
        # Drop the folders this leaves empty (a deleted face's tenant/face_id/), stopping at the first non-empty.
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    async def list(self, prefix: str) -> list[str]:
        folders, partial_name = _split_prefix(prefix)
        return await self._run(self._list_sync, prefix, self.root.joinpath(*folders), partial_name)

    def _list_sync(self, prefix: str, base: Path, partial_name: str) -> list[str]:
        def fail(exc: OSError) -> None:
            # A folder that is missing or vanished mid-walk (a concurrent delete) just holds no keys.
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise exc

        self._require_root()
        keys = []
        for folder, subfolders, files in os.walk(base, onerror=fail):
            top = folder == str(base)
            # Below `base` only folders that start with the prefix's last, partial segment can hold matches.
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and (not top or d.startswith(partial_name))]
            relative = Path(folder).relative_to(self.root).parts
            for name in files:
                key = "/".join((*relative, name))
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        with timed_store_call(self.observer, "objects", _op_name(fn), (StorageUnavailable,)):
            try:
                return await asyncio.to_thread(fn, *args)
            except OSError as exc:
                raise StorageUnavailable("objects", f"{self.root}: {exc.strerror or exc}") from exc


def _op_name(fn: Callable[..., object]) -> str:
    """The metrics label of a store call: `_put_sync` -> "put" (a fixed, small set of names)."""
    return getattr(fn, "__name__", "call").removeprefix("_").removesuffix("_sync")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
