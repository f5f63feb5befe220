"""What a failed pymilvus or gRPC call means: no connection, a released collection, an index type the server
cannot build, or another failure; and a short description of it for the StorageUnavailable detail."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

# Messages of failures that mean "no usable connection" (the client is then rebuilt on the next call).
_CONNECTION_MARKERS = (
    "unavailable",
    "deadline",
    "fail connecting",
    "failed to connect",
    "retry timeout",
    "connection refused",
    "connection reset",
    "socket closed",
    "channel",
    "not connected",
    "closed",
)
# Messages that mean the collection is not loaded in the server (e.g. a milvus-lite server restarted).
NOT_LOADED_MARKERS = ("not loaded", "collection not loaded", "released")
# Messages that mean the server cannot build the requested index type (milvus-lite without faiss, or SCANN,
# which milvus-lite accepts at create_index but cannot build).
UNSUPPORTED_INDEX_MARKERS = (
    "faiss",
    "not supported",
    "unsupported",
    "reserved for a future",
    "invalid index type",
    "unknown index_type",
)


def pymilvus_errors() -> tuple[type[BaseException], ...]:
    import grpc
    from pymilvus.exceptions import MilvusException

    return (MilvusException, grpc.RpcError)


def describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # MilvusException keeps the server's reason here
    if callable(getattr(exc, "details", None)):  # grpc.RpcError
        try:
            message = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        except Exception:
            message = None
    text = str(message or exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | concurrent.futures.TimeoutError):
        return True
    code = getattr(exc, "code", None)
    if code == 2:  # pymilvus's "cannot connect" code
        return True
    return any(marker in describe(exc).lower() for marker in _CONNECTION_MARKERS)


def mentions(exc: BaseException, markers: Sequence[str]) -> bool:
    text = describe(exc).lower()
    return any(m in text for m in markers)


class CallFailed(Exception):
    """A failed Milvus call, already described (becomes StorageUnavailable on the event loop)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
