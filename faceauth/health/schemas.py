"""Bodies of /healthz and /readyz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from faceauth.kit.requests import Answer


class HealthResponse(Answer):
    status: Literal["ok"] = "ok"


class DependencyState(BaseModel):
    status: Literal["ok", "down"]
    detail: str | None = None
    latency_ms: float | None = None


class ReadyResponse(Answer):
    status: Literal["ok", "unavailable"]
    checks: dict[str, DependencyState] = Field(
        description="milvus, object_store, ml_service; coordination when replicas share a server; and ml_models "
        "once the ML service answers (down: a model every photo needs is not loaded, which one and how to get it)."
    )
    model_id: str | None = Field(None, description="The embedding model the ML service has loaded.")
    warnings: list[str] = Field(default_factory=list)
