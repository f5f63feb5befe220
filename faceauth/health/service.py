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
    ) -> None:
        """`coordinator`: checked too when it is shared (a replica without it must not take traffic);
        `presence`: its warning (other replicas, no coordination) is passed on."""
        self.index = index
        self.objects = objects
        self.ml = ml
        self.coordinator = coordinator
        self.presence = presence

    async def readiness(self) -> Readiness:
        shared = self.coordinator is not None and self.coordinator.shared
        probes = [self.index.ping, self.objects.ping, self.ml.ready, *([self.coordinator.ping] if shared else [])]
        (milvus, _), (objects, _), (ml, ml_body), *coordination = await asyncio.gather(*map(_check, probes))
        warnings: list[str] = []
        if self.presence is not None and self.presence.warning:
            warnings.append(self.presence.warning)
        model_id = ((ml_body or {}).get("models", {}).get("embedder") or {}).get("model_id")
        if model_id and milvus.status == "ok":
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
