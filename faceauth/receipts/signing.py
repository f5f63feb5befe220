"""Receipt keys in the object store, next to the API keys (so every replica signs with the same key), and the
receipts signed with them (joserfc).

A key is ``_secrets/receipt_keys/<kid>``: its private JWK (Ed25519) and when it was made. The first receipt of a
fresh installation makes one. `faceauth receipts rotate` adds a newer one: the newest key signs, and every key is
published in the JWKS, so receipts signed before a rotation still verify. Replicas re-read the keys every minute.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from faceauth.storage.objects import ObjectStore

KEYS_PREFIX = "_secrets/receipt_keys/"
ALGORITHM = "EdDSA"  # Ed25519; RFC 9864 also names it "Ed25519", but most JOSE libraries know "EdDSA"
RECEIPT_TYPE = "faceauth-receipt+jwt"
_REGISTRY = jws.JWSRegistry(algorithms=[ALGORITHM])
_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class ReceiptKey:
    kid: str
    created_at_ms: int
    key: OKPKey

    def public(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


def _new_key() -> ReceiptKey:
    now = int(time.time() * 1000)
    kid = f"{time.strftime('%Y%m%d', time.gmtime(now / 1000))}-{secrets.token_hex(4)}"
    return ReceiptKey(kid, now, OKPKey.generate_key("Ed25519", parameters={"kid": kid}))


class ReceiptSigner:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._keys: list[ReceiptKey] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def keys(self) -> list[ReceiptKey]:
        """Every key, oldest first; made on first use when there is none."""
        if self._keys is not None and time.monotonic() - self._read_at < _REFRESH_SECONDS:
            return self._keys
        async with self._lock:
            keys = await self._read()
            if not keys:
                await self._save(_new_key())
                keys = await self._read()  # another replica may have made one at the same time: all are valid
            self._keys, self._read_at = keys, time.monotonic()
            return keys

    async def rotate(self) -> ReceiptKey:
        key = _new_key()
        await self._save(key)
        self._keys = None
        return key

    async def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public() for k in await self.keys()]}

    async def sign(self, claims: dict[str, Any]) -> str:
        key = (await self.keys())[-1]
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": RECEIPT_TYPE}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc's notice that RFC 9864 prefers the name "Ed25519"
            return jws.serialize_compact(header, payload, key.key, registry=_REGISTRY)

    async def _read(self) -> list[ReceiptKey]:
        keys = []
        for name in await self.objects.list(KEYS_PREFIX):
            raw = json.loads((await self.objects.get(name)).data)
            keys.append(ReceiptKey(raw["kid"], raw["created_at_ms"], OKPKey.import_key(raw["jwk"])))
        return sorted(keys, key=lambda k: (k.created_at_ms, k.kid))

    async def _save(self, key: ReceiptKey) -> None:
        body = {"kid": key.kid, "created_at_ms": key.created_at_ms, "jwk": key.key.as_dict(private=True)}
        await self.objects.put(f"{KEYS_PREFIX}{key.kid}", json.dumps(body).encode(), "application/json")


class InvalidReceipt(Exception):
    pass


def verify_receipt(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a receipt whose signature a key of `jwks` verifies; InvalidReceipt otherwise."""
    try:
        key_set = KeySet.import_key_set(jwks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = jws.deserialize_compact(token.strip(), key_set, registry=_REGISTRY)
        return dict(found.headers()), json.loads(found.payload)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise InvalidReceipt(f"{type(exc).__name__}: {exc}") from None
