"""The pymilvus client of one collection: its thread pool, its timeouts, and a new client after a broken one.

Every pymilvus call is blocking, so calls run in a small dedicated thread pool, each with the configured timeout.
Failures to reach or use Milvus raise StorageUnavailable("vectors", ...); a client whose connection broke is
thrown away and rebuilt on the next call, so the index recovers by itself when the server returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from faceauth.storage.errors import StorageUnavailable
from faceauth.storage.milvus.errors import (
    NOT_LOADED_MARKERS,
    CallFailed,
    describe,
    is_connection_error,
    mentions,
    pymilvus_errors,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# After a failed connect, calls fail at once for this long before the next attempt (seconds).
_RECONNECT_PAUSE = 1.0
# Concurrent Milvus calls per process: each blocks a thread while it waits on the network.
_WORKERS = 16
# pymilvus starts one embedded milvus-lite per `.db` path, but two clients created at once race to start it
# (the loser fails on the data folder's lock): create embedded clients one at a time.
_EMBEDDED_START = threading.Lock()


class MilvusConnection:
    """Runs calls `fn(client)` on a client of `uri` (a server, or milvus-lite embedded when it is a `.db` path)."""

    def __init__(self, uri: str, *, collection: str, token: str, db_name: str, timeout: float) -> None:
        self.uri = uri
        self.collection = collection
        self.token = token
        self.db_name = db_name
        self.timeout = timeout
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._connect_failed_at = -_RECONNECT_PAUSE
        self._connect_error = ""
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def run(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        rpcs: int = 1,
        timeout: float | None = None,
        retry_not_loaded: bool = True,
        before: Callable[[Any], None] | None = None,
    ) -> T:
        """Run `fn(client)` in the pool (`before(client)` first, when given). Maps every failure of Milvus to
        StorageUnavailable("vectors", ..., operation=what)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="milvus")
        per_call = timeout or self.timeout
        loop = asyncio.get_running_loop()
        # In the caller's context: what the call logs carries the request id.
        context = contextvars.copy_context()
        future = loop.run_in_executor(self._pool, context.run, self._call, fn, per_call, retry_not_loaded, before)
        # pymilvus honours its timeouts, but a retry may start just before one expires: this is the backstop.
        try:
            return await asyncio.wait_for(future, timeout=2 * per_call * rpcs + 2.0)
        except TimeoutError:
            self._drop_client(None)
            raise StorageUnavailable(
                "vectors", f"{what}: no answer within {2 * per_call * rpcs + 2.0:.0f} s", operation=what
            ) from None
        except CallFailed as exc:
            raise StorageUnavailable("vectors", f"{what}: {exc.detail}", operation=what) from None

    def _call(
        self,
        fn: Callable[[Any], T],
        timeout: float,
        retry_not_loaded: bool,
        before: Callable[[Any], None] | None,
    ) -> T:
        errors = pymilvus_errors()
        client = None
        try:
            client = self._get_client(timeout)
            if before is not None:
                before(client)
            try:
                return fn(client)
            except errors as exc:
                if not (retry_not_loaded and mentions(exc, NOT_LOADED_MARKERS)):
                    raise
                # A restarted server may come back with the collection released: load it and try once more.
                log.warning("Milvus collection %s is not loaded (%s); loading it", self.collection, describe(exc))
                client.load_collection(self.collection, timeout=timeout)
                return fn(client)
        except CallFailed:
            raise
        except (*errors, ConnectionError, TimeoutError, concurrent.futures.TimeoutError) as exc:
            if is_connection_error(exc):
                self._drop_client(client)
            raise CallFailed(describe(exc)) from None

    def _get_client(self, timeout: float) -> Any:
        with self._client_lock:
            if self._client is not None:
                return self._client
            # While Milvus is down, calls queued behind a failed connect fail at once instead of each waiting
            # out its own connect timeout.
            if time.monotonic() - self._connect_failed_at < _RECONNECT_PAUSE:
                raise CallFailed(f"cannot connect to {self.uri}: {self._connect_error}")
            from pymilvus import MilvusClient

            try:
                # A dedicated channel: ours to rebuild or close without touching other clients of this process.
                if self.uri.endswith(".db"):  # embedded: its folder may not exist yet (e.g. images on S3)
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                with _EMBEDDED_START if self.uri.endswith(".db") else contextlib.nullcontext():
                    self._client = MilvusClient(
                        uri=self.uri, token=self.token, db_name=self.db_name, timeout=timeout, dedicated=True
                    )
            except Exception as exc:
                self._connect_failed_at, self._connect_error = time.monotonic(), describe(exc)
                raise
            return self._client

    def _drop_client(self, client: Any) -> None:
        """Forget a client whose connection broke (None: whichever is current); the next call makes a new one."""
        with self._client_lock:
            if self._client is None or (client is not None and client is not self._client):
                return
            client, self._client = self._client, None
        try:
            client.close()
        except Exception as exc:
            log.debug("closing a broken Milvus client: %s", exc)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.to_thread(client.close)
            except Exception as exc:  # closing a dead connection is not worth an error
                log.debug("closing the Milvus client: %s", exc)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
