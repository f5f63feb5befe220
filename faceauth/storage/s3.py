"""S3ObjectStore: face images in a bucket on any S3 server, through the synchronous minio SDK."""

from __future__ import annotations

import asyncio
import contextvars
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TypeVar
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
from faceauth.storage.errors import ObjectNotFound, ObjectTooLarge, StorageUnavailable
from faceauth.storage.objects import StoredObject, check_content_type, key_parts, op_name, split_prefix

T = TypeVar("T")

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
        check_content_type(content_type)
        await self._run(self._put_sync, _object_name(key), data, content_type)

    def _put_sync(self, name: str, data: bytes, content_type: str) -> None:
        # One part up to 5 GiB: a single PUT, which urllib3 may safely retry (a multipart upload is not).
        self._client.put_object(
            self.bucket, name, io.BytesIO(data), len(data), content_type=content_type, part_size=MAX_PART_SIZE
        )

    async def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        return await self._run(self._get_sync, _object_name(key), key, max_bytes)

    def _get_sync(self, name: str, key: str, max_bytes: int | None = None) -> StoredObject:
        # With a limit, a ranged GET of at most the limit plus one byte: an oversized object is never loaded.
        length = 0 if max_bytes is None else max_bytes + 1
        try:
            response = self._client.get_object(self.bucket, name, length=length)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise ObjectNotFound(key) from None
            if exc.code == "InvalidRange":  # a range of an empty object
                return self._get_sync(name, key)
            raise
        try:
            data = response.read()
            if max_bytes is not None and len(data) > max_bytes:
                raise ObjectTooLarge(key, max_bytes)
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
        split_prefix(prefix)
        return await self._run(self._list_sync, prefix)

    def _list_sync(self, prefix: str) -> list[str]:
        objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
        return sorted(obj.object_name for obj in objects if obj.object_name and not obj.is_dir)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="s3-objects")
        op = op_name(fn)
        with timed_store_call(self.observer, "objects", op, (StorageUnavailable,)):
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, contextvars.copy_context().run, partial(fn, *args)
                )
            except StorageUnavailable as exc:  # found by the call itself (a missing bucket)
                exc.operation = exc.operation or op
                raise
            # ParseError: a server that is not S3 answered 200 with something other than XML.
            except (MinioException, HTTPError, OSError, ET.ParseError) as exc:
                raise StorageUnavailable("objects", self._describe(exc), operation=op) from exc

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
    key_parts(key)
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
