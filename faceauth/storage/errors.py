"""Storage failures the Face API turns into 503s (the dependency is down or failing, not the request)."""

from __future__ import annotations


class StorageUnavailable(RuntimeError):
    """A store could not be reached or failed to answer; `store` is "vectors" or "objects", `operation` the call
    that failed (when the store knows it)."""

    def __init__(self, store: str, detail: str, operation: str | None = None) -> None:
        super().__init__(f"{store} store unavailable: {detail}")
        self.store = store
        self.detail = detail
        self.operation = operation


class ObjectNotFound(KeyError):
    """No object under this key."""
