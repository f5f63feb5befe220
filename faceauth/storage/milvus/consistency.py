"""Read-your-writes without flush: the timestamp a read of this process waits for.

Session consistency is done here rather than by pymilvus: pymilvus remembers the timestamp each write returns,
but Milvus 2.3 returns 0 for deletes, so a "Session" read after a delete still saw the deleted row. Instead,
after each write we ask Milvus for a fresh timestamp (AllocTimestamp; the write is complete, so it is older) and
reads pass it as their guarantee timestamp ("Customized" consistency, which Milvus treats like Session with our
timestamp). One timestamp per collection and process, like pymilvus's.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from faceauth.storage.milvus.errors import describe

log = logging.getLogger(__name__)

# This process's newest write timestamp per (uri, db, collection).
_SESSION_TS: dict[tuple[str, str, str], int] = {}
_SESSION_LOCK = threading.Lock()
_UNKNOWN_TS = -1


class SessionConsistency:
    """The consistency of each read of one collection: "Strong", or "Customized" with this process's timestamp."""

    def __init__(self, uri: str, db_name: str, collection: str, *, level: str, timeout: float) -> None:
        self.uri = uri
        self.level = level
        self.timeout = timeout
        self._session_key = (uri, db_name, collection)
        # milvus-lite ignores consistency (its reads always see every write) and lacks AllocTimestamp.
        self.alloc_supported = True

    def note_write(self, client: Any) -> None:
        if self.level == "Strong" or not self.alloc_supported:
            return
        try:
            ts = self._alloc_timestamp(client)
        except Exception as exc:  # the write itself succeeded: make the next read find out instead
            log.debug("no timestamp after a Milvus write (%s); the next read asks again", describe(exc))
            ts = _UNKNOWN_TS
        with _SESSION_LOCK:
            if ts == _UNKNOWN_TS:
                _SESSION_TS[self._session_key] = _UNKNOWN_TS
            elif ts > 0:
                _SESSION_TS[self._session_key] = max(_SESSION_TS.get(self._session_key, 0), ts)

    def _alloc_timestamp(self, client: Any) -> int:
        """A timestamp from the server's clock, or 0 when it cannot give one (then reads are Strong)."""
        ts = 0
        alloc = getattr(client._get_connection(), "alloc_timestamp", None)  # not on MilvusClient's public API
        if alloc is not None:
            ts = int(alloc(timeout=self.timeout) or 0)  # pymilvus gives 0 when the server lacks the call
        if ts <= 0 and self.alloc_supported:
            self.alloc_supported = False
            log.warning("Milvus at %s cannot allocate timestamps: reads use Strong consistency", self.uri)
        return ts

    def read_params(self, client: Any) -> dict[str, Any]:
        """The consistency arguments of a read (query, search, query iterator)."""
        if self.level == "Strong" or not self.alloc_supported:
            return {"consistency_level": "Strong"}
        with _SESSION_LOCK:
            ts = _SESSION_TS.get(self._session_key, 0)
        if ts == _UNKNOWN_TS:
            ts = self._alloc_timestamp(client)
            if ts <= 0:
                return {"consistency_level": "Strong"}
            with _SESSION_LOCK:
                _SESSION_TS[self._session_key] = max(_SESSION_TS.get(self._session_key, 0), ts)
        # No write of ours yet: nothing to wait for (1 = "any time", what pymilvus sends in that case too).
        return {"consistency_level": "Customized", "guarantee_timestamp": max(ts, 1)}
