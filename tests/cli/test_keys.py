"""The admin key `faceauth up` makes: on the very first start only, never again once every key is revoked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faceauth.api.container import open_object_store
from faceauth.auth.keys import KeyStore
from faceauth.cli.keys import ensure_admin_key
from faceauth.config import APISettings


def test_a_new_admin_key_only_when_no_key_ever_existed(tmp_path: Path, capsys):
    settings = APISettings(data_dir=tmp_path / "data")
    token = ensure_admin_key(settings)
    assert token and token.startswith("fa_")
    assert ensure_admin_key(settings) is None  # a restart with the key in place

    async def revoke_all() -> None:
        objects = open_object_store(settings)
        await objects.open()
        keys = KeyStore(objects)
        for key in await keys.list():
            await keys.revoke(key.key_id)
        await objects.close()

    asyncio.run(revoke_all())
    capsys.readouterr()
    assert ensure_admin_key(settings) is None  # every key revoked: the lock-out stands
    assert "faceauth keys create --admin" in capsys.readouterr().err
