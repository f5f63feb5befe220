"""Who is calling: the tenant an API key is bound to, or all tenants (an admin key)."""

from __future__ import annotations

from dataclasses import dataclass

from faceauth.kit.errors import AppError


@dataclass(frozen=True)
class Principal:
    """A tenant key, an admin key, or anybody when authentication is disabled."""

    key_id: str | None
    tenant: str | None  # None: all tenants (admin key, or authentication disabled)

    @property
    def admin(self) -> bool:
        return self.tenant is None

    def scope(self, tenant: str | None) -> str | None:
        """The tenant this request may act on: the one it names, which must be the key's own, or the key's own
        when it names none. Checked before anything is read, so a 403 says nothing about what exists."""
        if tenant is None:
            return self.tenant
        return self.allow(tenant)

    def allow(self, tenant: str) -> str:
        """`tenant`, if this key may act on it (403 otherwise)."""
        if self.tenant is not None and tenant != self.tenant:
            raise AppError(403, "forbidden", "this API key is not allowed to act on that tenant")
        return tenant

    def require_admin(self) -> None:
        if not self.admin:
            raise AppError(403, "forbidden", "this operation needs an admin API key")


ANONYMOUS_ADMIN = Principal(None, None)
