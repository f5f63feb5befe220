"""What a receipt says: one builder per decision, from what the service decided (no request data beyond it)."""

from __future__ import annotations

import time
from typing import Any

from faceauth.kit.requests import current_request_id

ISSUER = "faceauth"


def receipt_claims(kind: str, tenant: str | None, **decision: Any) -> dict[str, Any]:
    """The common claims (issuer, time, request id, tenant, kind) and the decision's own."""
    return {
        "iss": ISSUER,
        "iat": int(time.time()),
        "request_id": current_request_id(),
        "tenant": tenant,
        "decision": kind,
        **decision,
    }
