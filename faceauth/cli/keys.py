"""`faceauth keys create|list|revoke`, and the admin key `faceauth up` makes on first start.

The commands work on the key store directly (the configured object store), so they need no running API and work
when every key has been lost or revoked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from faceauth.config import APISettings, load_api_settings
from faceauth.contracts.ids import is_valid_tenant

if TYPE_CHECKING:
    from faceauth.auth.keys import KeyStore

T = TypeVar("T")


async def _with_keys(settings: APISettings, fn: Callable[[KeyStore], Awaitable[T]]) -> T:
    from faceauth.api.container import open_object_store
    from faceauth.auth.keys import KeyStore

    objects = open_object_store(settings)
    await objects.open()
    try:
        return await fn(KeyStore(objects))
    finally:
        await objects.close()


def ensure_admin_key(settings: APISettings) -> str | None:
    """An admin key's token when the store has never held a key (a first start), else None.

    Never after every key was revoked: revoking them all is how an operator locks everyone out, and a restart must
    not undo that by printing a fresh admin key to whoever reads the logs (`faceauth keys create --admin` does)."""

    async def run(keys: KeyStore) -> str | None:
        if await keys.any_ever():
            if not await keys.any_active():
                print(
                    "faceauth: every API key is revoked; make one with `faceauth keys create --admin`",
                    file=sys.stderr,
                    flush=True,
                )
            return None
        _, token = await keys.create(None, "created by faceauth up")
        return token

    return asyncio.run(_with_keys(settings, run))


def _run(fn: Callable[[KeyStore], Awaitable[int]]) -> int:
    from faceauth.storage.errors import StorageUnavailable

    try:
        return asyncio.run(_with_keys(load_api_settings(), fn))
    except StorageUnavailable as exc:
        print(f"faceauth: the key store (object store) is unavailable: {exc.detail}", file=sys.stderr)
        return 1


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _create(args: argparse.Namespace) -> int:
    if (args.tenant is None) == (not args.admin):
        print("faceauth: give --tenant T (a tenant key) or --admin (an admin key)", file=sys.stderr)
        return 2
    if args.tenant is not None and not is_valid_tenant(args.tenant):
        print("faceauth: a tenant uses letters, digits and . _ : @ - (at most 256 characters)", file=sys.stderr)
        return 2

    async def run(keys: KeyStore) -> int:
        key, token = await keys.create(args.tenant, args.name)
        scope = "admin (all tenants)" if key.admin else f"tenant {key.tenant}"
        print(f"created key {key.key_id} for {scope}; the key is shown once, store it now:")
        print(token)
        return 0

    return _run(run)


def _list(args: argparse.Namespace) -> int:
    async def run(keys: KeyStore) -> int:
        print(f"{'key id':<18} {'scope':<24} {'created':<21} {'revoked':<21} name")
        for key in await keys.list():
            scope = "admin" if key.admin else f"tenant:{key.tenant}"
            created, revoked = _when(key.created_at_ms), _when(key.revoked_at_ms)
            print(f"{key.key_id:<18} {scope:<24} {created:<21} {revoked:<21} {key.name}")
        return 0

    return _run(run)


def _revoke(args: argparse.Namespace) -> int:
    async def run(keys: KeyStore) -> int:
        key = await keys.revoke(args.key_id)
        if key is None:
            print(f"faceauth: no key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked key {key.key_id} (running APIs stop accepting it within 10 s)")
        return 0

    return _run(run)


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys").add_subparsers(
        dest="keys_command", required=True
    )
    p = keys.add_parser("create", help="a new API key for one tenant (--tenant) or for all (--admin)")
    p.add_argument("--tenant", default=None)
    p.add_argument("--admin", action="store_true")
    p.add_argument("--name", default="", help="a note to recognise the key by (who or what uses it)")
    p.set_defaults(func=_create)
    keys.add_parser("list", help="every key: id, scope, dates (never the key itself)").set_defaults(func=_list)
    p = keys.add_parser("revoke", help="revoke a key by its id")
    p.add_argument("key_id")
    p.set_defaults(func=_revoke)
