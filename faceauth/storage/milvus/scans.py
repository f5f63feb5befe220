"""Reading many rows: query iterators over a filter, and the passes of `scan_rows` kept between its pages."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from faceauth.storage.records import TooManyRows

# milvus-lite has no MVCC timestamp to give a query iterator; pymilvus warns about it on every scan.
logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)

# Rows fetched per round trip when scanning a tenant (listing, clustering, purging).
SCAN_BATCH = 1000


def scan_all(
    client: Any,
    collection: str,
    expr: str,
    fields: list[str],
    *,
    timeout: float,
    consistency: dict[str, Any],
    max_rows: int | None,
    each: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every row matching `expr`, batch by batch (Milvus caps one query's window at 16384 rows). With `each`,
    batches go to it and are not kept. More than `max_rows` rows raise TooManyRows."""
    iterator = client.query_iterator(
        collection, batch_size=SCAN_BATCH, filter=expr, output_fields=fields, timeout=timeout, **consistency
    )
    rows: list[dict[str, Any]] = []
    seen = 0
    try:
        while batch := iterator.next():
            seen += len(batch)
            if max_rows is not None and seen > max_rows:
                raise TooManyRows(max_rows)
            if each is None:
                rows.extend(batch)
            else:
                each(batch)
    finally:
        iterator.close()
    return rows


class RowScan:
    """One pass of a query iterator over the collection, and the rows it fetched beyond the page last taken."""

    def __init__(self, client: Any, iterator: Any) -> None:
        self.client = client
        self.iterator = iterator
        self.pending: list[dict[str, Any]] = []
        self.exhausted = False

    def take(self, limit: int, *, max_seconds: float) -> list[dict[str, Any]]:
        """The next `limit` rows ([] only at the end). Milvus 2.3 answers an iterator a few rows at a time, so a
        page gathers several batches, within `max_seconds` (then it is shorter, never empty)."""
        started = time.monotonic()
        while len(self.pending) < limit and not self.exhausted and time.monotonic() - started < max_seconds:
            batch = self.iterator.next()
            if batch:
                self.pending.extend(batch)
            else:
                self.exhausted = True
        rows, self.pending = self.pending[:limit], self.pending[limit:]
        return rows

    def close(self) -> None:
        with contextlib.suppress(Exception):  # releases a client-side cache; nothing worth failing a page for
            self.iterator.close()


class RowScans:
    """Passes of scan_rows between two pages, by the row_id their last page ended with. A pass that is never
    continued is closed once newer ones push it out."""

    _KEEP = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parked: dict[str, RowScan] = {}

    def resume(self, client: Any, after: str | None) -> RowScan | None:
        if after is None:
            return None
        with self._lock:
            scan = self._parked.pop(after, None)
        if scan is not None and scan.client is not client:
            scan.close()  # made on a connection that has been replaced since: start again from `after`
            return None
        return scan

    def park(self, after: str, scan: RowScan) -> None:
        with self._lock:
            old = self._parked.pop(after, None)
            self._parked[after] = scan
            evicted = [self._parked.pop(k) for k in list(self._parked)[: -self._KEEP]]
        for stale in [old, *evicted]:
            if stale is not None and stale is not scan:
                stale.close()

    def close_all(self) -> None:
        with self._lock:
            scans, self._parked = list(self._parked.values()), {}
        for scan in scans:
            scan.close()
