"""Bodies of the liveness endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from faceauth.kit.requests import Answer
from faceauth.liveness.challenge import Step

Reason = Literal[
    "session_expired",
    "session_used",
    "implausible_timestamps",
    "no_face",
    "static_frames",
    "identity_changed",
    "spoof_suspected",
    "wrong_step_order",
    "step_not_observed",
    "replayed_probe",
]


class ChallengeStep(BaseModel):
    step: Step
    prompt: str = Field(description="What to show the person (English).")


class SessionResponse(Answer):
    session_id: str
    challenge: list[ChallengeStep] = Field(description="2-3 steps, in the order the person must do them.")
    expires_at: str = Field(description="ISO 8601 UTC: frames must arrive before this.")
    expires_in_seconds: float
    subject_id: str | None
    reference_id: str | None


class StepOut(BaseModel):
    step: Step
    observed: bool = Field(description="Seen in order, after the previous step.")
    frame: int | None = Field(description="Index of the frame (over all calls) where it was seen.")


class VerificationOut(BaseModel):
    type: Literal["subject", "face"]
    id: str = Field(description="The subject_id or reference_id the session named.")
    matched: bool
    score: float = Field(description="Cosine similarity of the best frame to the best enrolled face.")
    threshold: float
    face_id: str | None = Field(description="The enrolled face that scored best.")


class FramesResponse(Answer):
    session_id: str
    decided: bool = Field(description="false: frames kept, more expected (final=false); the fields below are null.")
    frames_received: int
    live: bool | None = Field(None, description="Every check passed.")
    score: float | None = Field(
        None,
        description="0..1: share of steps seen in order x mean P(live) of the frames (0: a still, a changed person).",
    )
    reasons: list[Reason] | None = Field(None, description="Why it is not live; empty when live.")
    steps: list[StepOut] | None = None
    verification: VerificationOut | None = Field(
        None, description="With subject_id / reference_id: the best frame verified against the enrolled person."
    )
    receipt: str | None = Field(None, description="With receipt=true: the signed decision (docs/LIVENESS.md).")
