"""A bounded window of probe fingerprints per subject, in the object store (shared by every replica).

A fingerprint is the SHA-256 of the probe's bytes, its embedding and its face geometry (the 5 landmarks relative
to the eyes), never the image. A probe is a replay when its bytes are those of a fingerprint in the window, or when
its embedding is at least 0.99 similar to one with the same geometry (the same photo re-encoded, cropped or
re-photographed), or 0.99 similar to the subject's enrolled face (a photo of the enrolment photo). Two genuine
captures of a person are never that similar: pose, light and expression always move the embedding more.

The window keeps the last `FACEAUTH_REPLAY_WINDOW` probes of each subject for at most
`FACEAUTH_REPLAY_RETENTION_DAYS`; older fingerprints are dropped whenever the window is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from faceauth.contracts.analysis import Analysis
from faceauth.coordination import Locks
from faceauth.storage.errors import ObjectNotFound
from faceauth.storage.keys import REPLAY_AREA, key_segment
from faceauth.storage.objects import ObjectStore

WINDOW_PREFIX = REPLAY_AREA
NEAR_SIMILARITY = 0.99
SAME_GEOMETRY = 0.03  # largest landmark difference, in eye distances


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    embedding: tuple[float, ...]
    geometry: tuple[float, ...]  # 5 landmarks, relative to the eye midpoint, in eye distances
    at_ms: int

    @classmethod
    def of(cls, image: bytes, analysis: Analysis) -> Fingerprint | None:
        if analysis.embedding is None or analysis.face is None:
            return None
        return cls.from_parts(hashlib.sha256(image).hexdigest(), analysis.embedding, analysis.face.landmarks)

    @classmethod
    def from_parts(cls, sha256: str, embedding, landmarks) -> Fingerprint:
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        centre = (lm[0] + lm[1]) / 2
        scale = max(float(np.linalg.norm(lm[1] - lm[0])), 1e-6)
        geometry = ((lm - centre) / scale).ravel()
        return cls(
            sha256,
            tuple(round(float(x), 6) for x in embedding),
            tuple(round(float(x), 4) for x in geometry),
            int(time.time() * 1000),
        )

    def repeats(self, other: Fingerprint) -> bool:
        if self.sha256 == other.sha256:
            return True
        similarity = float(np.dot(np.asarray(self.embedding), np.asarray(other.embedding)))
        shape = float(np.max(np.abs(np.asarray(self.geometry) - np.asarray(other.geometry))))
        return similarity >= NEAR_SIMILARITY and shape <= SAME_GEOMETRY


class ReplayGuard:
    def __init__(
        self,
        objects: ObjectStore,
        locks: Locks,
        *,
        window: int,
        retention_days: float,
        tenants: set[str],
        disabled: set[str],
    ) -> None:
        """`tenants`: the tenants it applies to ("*": all), less `disabled`."""
        self.objects = objects
        self.locks = locks
        self.window = window
        self.retention_ms = retention_days * 86_400_000
        self.tenants = tenants
        self.disabled = disabled

    def enabled(self, tenant: str | None) -> bool:
        if not tenant or tenant in self.disabled or self.window <= 0:
            return False
        return "*" in self.tenants or tenant in self.tenants

    async def check_and_record(
        self, tenant: str, subject_id: str, probe: Fingerprint, enrolled: list[np.ndarray]
    ) -> bool:
        """Is `probe` a replay for this subject? It joins the subject's window either way (a replayed probe
        replayed again is still caught)."""
        if any(float(np.dot(np.asarray(probe.embedding), v)) >= NEAR_SIMILARITY for v in enrolled):
            replayed = True
        else:
            replayed = False
        key = f"{WINDOW_PREFIX}{key_segment(tenant)}/{hashlib.sha256(subject_id.encode()).hexdigest()[:32]}"
        async with self.locks.hold(("replay", tenant, subject_id)) as lease:
            window = await self._read(key)
            replayed = replayed or any(probe.repeats(f) for f in window)
            cutoff = probe.at_ms - self.retention_ms
            kept = [f for f in window if f.at_ms >= cutoff and f.sha256 != probe.sha256][-(self.window - 1) :]
            await lease.check()
            await self.objects.put(key, json.dumps([asdict(f) for f in [*kept, probe]]).encode(), "application/json")
        return replayed

    async def _read(self, key: str) -> list[Fingerprint]:
        try:
            raw = json.loads((await self.objects.get(key)).data)
        except ObjectNotFound:
            return []
        return [Fingerprint(f["sha256"], tuple(f["embedding"]), tuple(f["geometry"]), int(f["at_ms"])) for f in raw]
