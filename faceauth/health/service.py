"""Readiness: each dependency pinged at once, with a deadline; and a warning when the collection holds vectors of
an embedding model other than the one the ML service runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from faceauth.coordination import Coordinator
from faceauth.health.presence import Presence
from faceauth.health.schemas import DependencyState
from faceauth.ml_client import MLClient
from faceauth.storage.objects import ObjectStore
from faceauth.storage.vectors import FaceIndex

# A dependency that takes longer than this to answer a ping counts as down for readiness.
_CHECK_TIMEOUT_S = 5.0
# How to get each ML model that enrolment and search need (every photo goes through all of them).
MODEL_HINTS = {
    "spoof": "set ML_SERVICE_SPOOF_LOCAL_MODEL_PATH to a MiniFASNet .onnx file, or run `faceauth models fetch "
    "minifasnet_v2` (offline: add --url file:///path/to/the/file); docs/MODELS.md",
    "nsfw": "the nudenet package ships it (reinstall faceauth), or set ML_SERVICE_NSFW_LOCAL_MODEL_PATH; "
    "docs/MODELS.md",
    "detector": "check ML_SERVICE_FACE_MODEL and the model files (`faceauth models list`); docs/MODELS.md",
    "embedder": "check ML_SERVICE_FACE_MODEL and the model files (`faceauth models list`); docs/MODELS.md",
    "blur": "check ML_SERVICE_BLUR_* (`faceauth models list`); docs/MODELS.md",
}


def missing_models(ml_ready_body: dict[str, Any]) -> list[str]:
    """One plain sentence per ML model that is not loaded, from the ML service's /readyz body: which model, why,
    and how to get it. Empty: every model a photo needs is there."""
    found = []
    for name, state in sorted((ml_ready_body.get("models") or {}).items()):
        # "off": a check this deployment turned off (ML_SERVICE_NSFW_ENABLED=false): photos do not need it.
        if (state or {}).get("state") not in ("ready", "off"):
            reason = (state or {}).get("error") or (state or {}).get("state") or "not loaded"
            hint = MODEL_HINTS.get(name, "docs/MODELS.md")
            found.append(f"the {name} model is not loaded ({reason}); enrolment and search need it: {hint}")
    return found


# /readyz is open and probed often: its pings (one an fsync on the local store) run at most once this often
# (FACEAUTH_READINESS_CACHE_SECONDS).
READINESS_CACHE_S = 1.5
# The collection's model mix (a query per model) is not part of the probe; asked for by admins, cached this long.
_MODEL_MIX_CACHE_S = 60.0


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, DependencyState]
    model_id: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.status == "ok" for c in self.checks.values())


async def _check(probe: Callable[[], Awaitable[Any]]) -> tuple[DependencyState, Any]:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(probe(), _CHECK_TIMEOUT_S)
    except TimeoutError:
        return DependencyState(status="down", detail=f"no answer within {_CHECK_TIMEOUT_S:.0f} s"), None
    except Exception as exc:  # any failure means "not ready"; the detail says which and why
        return DependencyState(status="down", detail=str(exc)[:300]), None
    return DependencyState(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 1)), result


class HealthService:
    def __init__(
        self,
        index: FaceIndex,
        objects: ObjectStore,
        ml: MLClient,
        *,
        coordinator: Coordinator | None = None,
        presence: Presence | None = None,
        cache_s: float = READINESS_CACHE_S,
    ) -> None:
        """`coordinator`: checked too when it is shared (a replica without it must not take traffic);
        `presence`: its warning (other replicas, no coordination) is passed on."""
        self.cache_s = cache_s
        self.index = index
        self.objects = objects
        self.ml = ml
        self.coordinator = coordinator
        self.presence = presence
        self._lock = asyncio.Lock()  # one round of pings at a time; the callers meanwhile share its answer
        self._cached: tuple[float, Readiness] | None = None
        self._model_mix: tuple[float, str | None, list[str]] | None = None

    async def readiness(self) -> Readiness:
        """The dependencies' state, pinged at most once per READINESS_CACHE_S whatever the rate of probes."""
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            found = await self._ping_all()
            self._cached = (time.monotonic(), found)
            return found

    async def _ping_all(self) -> Readiness:
        shared = self.coordinator is not None and self.coordinator.shared
        probes = [self.index.ping, self.objects.ping, self.ml.ready, *([self.coordinator.ping] if shared else [])]
        (milvus, _), (objects, _), (ml, ml_body), *coordination = await asyncio.gather(*map(_check, probes))
        warnings: list[str] = []
        if self.presence is not None and self.presence.warning:
            warnings.append(self.presence.warning)
        model_id = ((ml_body or {}).get("models", {}).get("embedder") or {}).get("model_id")
        checks = {"milvus": milvus, "object_store": objects, "ml_service": ml}
        if ml.status == "ok":
            # The ML service answers, but without a model every photo gets a 503: not ready for the main job.
            missing = missing_models(ml_body or {})
            checks["ml_models"] = (
                DependencyState(status="down", detail=" | ".join(missing)[:1000])
                if missing
                else DependencyState(status="ok")
            )
        if coordination:
            checks["coordination"] = coordination[0][0]
        return Readiness(checks, model_id, warnings)

    async def model_mix_warnings(self, found: Readiness) -> list[str]:
        """A warning when the collection holds vectors of other embedding models (cached; for admins only)."""
        model_id = found.model_id
        if not model_id or found.checks["milvus"].status != "ok":
            return []
        now = time.monotonic()
        if (
            self._model_mix is not None
            and self._model_mix[1] == model_id
            and now - self._model_mix[0] < _MODEL_MIX_CACHE_S
        ):
            return self._model_mix[2]
        warnings: list[str] = []
        try:
            others = await self.index.other_model_ids(model_id)
        except Exception as exc:  # readiness must answer even if this extra query fails
            others = []
            warnings.append(f"could not list the collection's embedding models: {exc}")
        if others:
            warnings.append(
                f"the collection holds vectors of other embedding models ({', '.join(sorted(others))}); search "
                f"compares only {model_id}: re-embed the stored images (docs/OPERATIONS.md)"
            )
        self._model_mix = (now, model_id, warnings)
        return warnings
