"""Object-key layout of face images: ``<tenant>/<face_id>/<revision>``.

Each revision of a face has its own key, so a write never overwrites an image a reader or a rollback still needs.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from faceauth.contracts.ids import ID_CHARS

# Stores take at most 255 bytes per key segment and a tenant may have 256 characters (ids at most 128).
_SEGMENT_KEEP_BYTES = 200


def key_segment(name: str) -> str:
    """`name` as one object-key segment: a long one keeps its start and gains a digest. "~" is not an id
    character, so a shortened name never equals a real one."""
    if len(name.encode()) <= _SEGMENT_KEEP_BYTES:
        return name
    return f"{name[:160]}~{hashlib.sha256(name.encode()).hexdigest()[:32]}"


def tenant_prefix(tenant: str) -> str:
    return f"{key_segment(tenant)}/"


def face_prefix(tenant: str, face_id: str) -> str:
    return f"{tenant_prefix(tenant)}{face_id}/"


def revision_key(tenant: str, face_id: str, now_ms: int) -> str:
    # Zero-padded milliseconds sort revisions by age; the random tail keeps two writes in one ms apart.
    return f"{face_prefix(tenant, face_id)}{now_ms:013d}-{uuid.uuid4().hex[:12]}"


def revision_ms(key: str) -> int | None:
    """When the revision in `key` was written (ms since the epoch), or None if the key is not a revision key."""
    try:
        return int(key.rsplit("/", 1)[-1].split("-", 1)[0])
    except ValueError:
        return None


# A revision's key: a tenant as is, or a long one shortened to its start, "~" and a digest ("~" is in no id).
REVISION_KEY = re.compile(
    rf"(?P<tenant>{ID_CHARS}(?:~[0-9a-f]{{32}})?)/(?P<face_id>{ID_CHARS})/[0-9]{{13}}-[0-9a-f]{{12}}"
)


# Object-store areas that hold a tenant's records beside its images, each as `<area><tenant segment>/...`: liveness
# sessions, replay windows (probe fingerprints) and stored idempotent answers. One list, so a tenant purge erases
# every one of them.
LIVENESS_AREA = "_liveness/"
REPLAY_AREA = "_replay/"
IDEMPOTENCY_AREA = "_idempotency/"
TENANT_AREAS = (LIVENESS_AREA, REPLAY_AREA, IDEMPOTENCY_AREA)
