"""Ids and tenants: one character set and its limits, for the Face API's routes, the CLI and the stores.

Ids are path segments of object keys ("tenant/face_id/revision") and literals in Milvus filters, so they keep to
a small, documented character set: no "/", quotes, spaces or control characters.
"""

from __future__ import annotations

import re

ID_CHARS = r"[A-Za-z0-9][A-Za-z0-9._:@-]*"
ID_PATTERN = rf"^{ID_CHARS}$"
FACE_ID_MAX = 128  # face ids and subject ids
TENANT_MAX = 256
TOP_K_MAX = 100

ID_DOC = f"letters, digits and . _ : @ - (first a letter or digit), at most {FACE_ID_MAX} characters"
TENANT_DOC = f"tenant namespace: same characters as ids, at most {TENANT_MAX}"

_ID = re.compile(ID_CHARS)


def is_valid_id(value: str, max_length: int = FACE_ID_MAX) -> bool:
    """A face or subject id (or, with max_length=TENANT_MAX, a tenant) as the routes accept it."""
    return len(value) <= max_length and _ID.fullmatch(value) is not None


def is_valid_tenant(value: str) -> bool:
    return is_valid_id(value, TENANT_MAX)
