"""GET /.well-known/jwks.json: the public keys receipts are signed with (no API key: anyone may verify)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import JSONResponse

from faceauth.receipts.signing import ReceiptSigner
from faceauth.web.deps import provided

router = APIRouter(tags=["receipts"])
ReceiptSignerDep = Annotated[ReceiptSigner, Depends(provided(ReceiptSigner))]


@router.get("/.well-known/jwks.json", summary="Public keys of the decision receipts (JWKS)")
async def jwks(signer: ReceiptSignerDep) -> JSONResponse:
    return JSONResponse(await signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


ReceiptForm = Annotated[
    bool, Form(description="true: the answer carries `receipt`, a signed JWS of this decision (docs/LIVENESS.md)")
]
