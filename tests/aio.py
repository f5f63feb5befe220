"""Async test bodies without an asyncio pytest plugin."""

from __future__ import annotations

import asyncio
import functools


def async_test(fn):
    """Run an async test body on a fresh event loop (pytest still resolves fixtures from its signature)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
