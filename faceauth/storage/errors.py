"""Storage failures the Face API turns into 503s (the dependency is down or failing, not the request)."""

from __future__ import annotations


class StorageUnavailable(RuntimeError):
    """A store could not be reached or failed to answer; `store` is "vectors" or "objects".

    `operation` names the store call that failed ("insert", "query", "search", "put", "get", "list", ...: the
    names the stores' metrics use), or is None when the raiser did not say."""

    def __init__(self, store: str, detail: str, operation: str | None = None) -> None:
        super().__init__(f"{store} store unavailable: {detail}")
        self.store = store
        self.detail = detail
        self.operation = operation


class ObjectNotFound(KeyError):
    """No object under this key."""


class ObjectTooLarge(ValueError):
    """The object is larger than the reader's limit (`get(key, max_bytes=...)`); at most the limit plus one byte
    of it was read."""

    def __init__(self, key: str, max_bytes: int) -> None:
        super().__init__(f"{key} is larger than {max_bytes} bytes")
        self.key = key
        self.max_bytes = max_bytes
