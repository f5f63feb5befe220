"""`faceauth receipts verify FILE --jwks JWKS`, `faceauth receipts rotate`, `faceauth receipts jwks`.

`verify` needs no server and no store: the receipt and the published keys (a saved copy of the Face API's
`/.well-known/jwks.json`) are enough, which is what a dispute years later has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from faceauth.config import load_api_settings


def _verify(args: argparse.Namespace) -> int:
    from faceauth.receipts.signing import InvalidReceipt, verify_receipt

    try:
        token = Path(args.file).read_text().strip()
        jwks = json.loads(Path(args.jwks).read_text())
    except (OSError, ValueError) as exc:
        print(f"faceauth: cannot read the receipt or the keys: {exc}", file=sys.stderr)
        return 2
    try:
        header, claims = verify_receipt(token, jwks)
    except InvalidReceipt as exc:
        print(f"INVALID: the signature does not verify against {args.jwks} ({exc})", file=sys.stderr)
        return 1
    when = datetime.fromtimestamp(claims.get("iat", 0), tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"valid receipt, signed by key {header.get('kid')} at {when}")
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


async def _with_signer(fn):
    from faceauth.api.container import open_object_store
    from faceauth.receipts.signing import ReceiptSigner

    objects = open_object_store(load_api_settings())
    await objects.open()
    try:
        return await fn(ReceiptSigner(objects))
    finally:
        await objects.close()


def _rotate(args: argparse.Namespace) -> int:
    async def run(signer) -> int:
        key = await signer.rotate()
        print(f"new receipt signing key {key.kid}; running APIs sign with it within a minute, old keys stay published")
        return 0

    return asyncio.run(_with_signer(run))


def _jwks(args: argparse.Namespace) -> int:
    async def run(signer) -> int:
        print(json.dumps(await signer.jwks(), indent=2))
        return 0

    return asyncio.run(_with_signer(run))


def register(sub: argparse._SubParsersAction) -> None:
    receipts = sub.add_parser(
        "receipts", help="verify a decision receipt offline; rotate the signing key"
    ).add_subparsers(dest="receipts_command", required=True)
    p = receipts.add_parser("verify", help="check a receipt's signature against saved public keys (no server)")
    p.add_argument("file", help="a file holding the receipt (the compact JWS)")
    p.add_argument("--jwks", required=True, help="a saved copy of the Face API's /.well-known/jwks.json")
    p.set_defaults(func=_verify)
    receipts.add_parser("rotate", help="a new signing key (the old ones stay published)").set_defaults(func=_rotate)
    receipts.add_parser("jwks", help="print the public keys (as /.well-known/jwks.json)").set_defaults(func=_jwks)
