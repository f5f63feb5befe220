"""Who is calling: the tenant an API key is bound to, or all tenants (an admin key)."""

from __future__ import annotations

from dataclasses import dataclass

from faceauth.kit.errors import AppError


@dataclass(frozen=True)
class Principal:
    """A tenant key, an admin key, or anybody when authentication is disabled."""

    key_id: str | None
    tenant: str | None  # None: all tenants (admin key, or authentication disabled)
    allow_aligned: bool = False  # the key may send aligned=true photos (set when the key is made)

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

    def allow_aligned_photos(self, tenant_allows: bool | None = None) -> None:
        """The one check of aligned=true (a pre-cropped face, which skips anti-spoofing): 403 aligned_not_allowed
        unless this is an admin key, the key was made with allow_aligned, or the tenant's switch (`tenant_allows`,
        from the tenant's policy or FACEAUTH_ALIGNED_TENANTS) turns it on."""
        if self.admin or self.allow_aligned or tenant_allows is True:
            return
        raise AppError(
            403,
            "aligned_not_allowed",
            "this API key may not send aligned=true photos (they skip anti-spoofing): an admin can allow it "
            "per key (faceauth keys create --allow-aligned) or per tenant (FACEAUTH_ALIGNED_TENANTS)",
            details={"field": "aligned"},
        )

    def require_admin(self) -> None:
        if not self.admin:
            raise AppError(403, "forbidden", "this operation needs an admin API key")


ANONYMOUS_ADMIN = Principal(None, None)
