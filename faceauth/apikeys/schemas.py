"""Bodies of the API key endpoints. A key's secret appears once, in the answer that created it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from faceauth.contracts.ids import ID_PATTERN, TENANT_DOC, TENANT_MAX
from faceauth.kit.requests import Answer


class KeyCreate(BaseModel):
    tenant: str | None = Field(
        None, pattern=ID_PATTERN, max_length=TENANT_MAX, description=f"{TENANT_DOC}; null: an admin key"
    )
    name: str = Field("", max_length=200, description="what the key is for (shown in listings)")


class KeyOut(BaseModel):
    key_id: str
    tenant: str | None = Field(description="null: an admin key (every tenant)")
    admin: bool
    name: str
    created_at_ms: int
    revoked_at_ms: int | None
    active: bool


class KeyResponse(Answer, KeyOut):
    pass


class KeyCreatedResponse(Answer, KeyOut):
    key: str = Field(description="the API key itself: shown this once, never stored (only its digest is)")


class KeyListResponse(Answer):
    keys: list[KeyOut] = Field(description="Every key, oldest first, revoked ones included.")


class CallerResponse(Answer):
    key_id: str | None = Field(description="null when authentication is disabled")
    tenant: str | None = Field(description="the tenant the key is bound to; null: an admin key (every tenant)")
    admin: bool
