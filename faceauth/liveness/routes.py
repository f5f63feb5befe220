"""Active liveness: POST /v1/liveness/sessions, POST /v1/liveness/sessions/{session_id}/frames; GET /liveness.js."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import Response

from faceauth.contracts.ids import FACE_ID_MAX, ID_PATTERN
from faceauth.idempotency import IdempotencyKey, IdempotentAnswersDep
from faceauth.liveness import schemas
from faceauth.liveness.challenge import PROMPTS
from faceauth.liveness.service import MAX_FRAMES, MIN_FRAMES, Collected, Decision, LivenessService
from faceauth.photos.deps import mixed_photos
from faceauth.receipts.claims import receipt_claims
from faceauth.receipts.routes import ReceiptForm, ReceiptSignerDep
from faceauth.web.deps import ScopedTenantForm, SettingsDep, provided
from faceauth.web.params import PHOTO_ERRORS, error

router = APIRouter(tags=["liveness"])
client_router = APIRouter(tags=["liveness"])

LivenessServiceDep = Annotated[LivenessService, Depends(provided(LivenessService))]
SessionIdPath = Annotated[str, Path(pattern=r"^ls_[0-9a-f]{32}$", description="as POST /v1/liveness/sessions gave it")]
_OptionalId = Form(pattern=ID_PATTERN, max_length=FACE_ID_MAX)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.post(
    "/v1/liveness/sessions",
    response_model=schemas.SessionResponse,
    summary="Start an active liveness session: a random 2-3 step head-movement challenge",
    responses={
        404: error("subject_not_found / face_not_found: the subject_id or reference_id is not enrolled"),
        422: error("invalid_reference (both subject_id and reference_id), bad field"),
    },
)
async def create_session(
    service: LivenessServiceDep,
    tenant: ScopedTenantForm,
    subject_id: Annotated[str | None, _OptionalId] = None,
    reference_id: Annotated[str | None, _OptionalId] = None,
):
    session = await service.start(tenant, subject_id=subject_id, reference_id=reference_id)
    return schemas.SessionResponse(
        session_id=session.session_id,
        challenge=[schemas.ChallengeStep(step=s, prompt=PROMPTS[s]) for s in session.challenge],
        expires_at=_iso(session.expires_at_ms),
        expires_in_seconds=(session.expires_at_ms - session.created_at_ms) / 1000,
        subject_id=session.subject_id,
        reference_id=session.reference_id,
    )


@router.post(
    "/v1/liveness/sessions/{session_id}/frames",
    response_model=schemas.FramesResponse,
    summary=f"Frames captured while following the challenge ({MIN_FRAMES}-{MAX_FRAMES} in all, in one or more calls)",
    responses={
        **PHOTO_ERRORS,
        404: error("session_not_found: no such session in this tenant"),
        422: error("invalid_frame_count, timestamps_mismatch, unreadable image, bad field"),
    },
)
async def submit_frames(
    session_id: SessionIdPath,
    service: LivenessServiceDep,
    answers: IdempotentAnswersDep,
    settings: SettingsDep,
    signer: ReceiptSignerDep,
    tenant: ScopedTenantForm,
    frames: Annotated[list[UploadFile], File(description="JPEG frames, in capture order")] = [],  # noqa: B006
    frames_b64: Annotated[list[str], Form(description="or: the frames as base64")] = [],  # noqa: B006
    timestamps: Annotated[
        list[float], Form(description="capture time of each frame in ms (any clock, e.g. Date.now()), in order")
    ] = [],  # noqa: B006
    final: Annotated[bool, Form(description="false: keep these frames and wait for more")] = True,
    receipt: ReceiptForm = False,
    idempotency_key: IdempotencyKey = None,
):
    async def decide():
        photos = await mixed_photos(settings.max_image_bytes, ("frames", frames), ("frames_b64", frames_b64), ("", []))
        result = await service.submit(tenant, session_id, photos, timestamps, final=final)
        if isinstance(result, Collected):
            return schemas.FramesResponse(
                session_id=session_id, decided=False, frames_received=len(result.session.frames)
            )
        answer = _decision(result)
        if receipt:
            answer.receipt = await signer.sign(_liveness_receipt(tenant, result, answer))
        return answer

    return await answers.answer(idempotency_key, "liveness_frames", tenant, decide)


def _liveness_receipt(tenant: str, decision: Decision, answer: schemas.FramesResponse) -> dict:
    v = decision.verification
    frames = [f for f in decision.session.frames if f.face]
    return receipt_claims(
        "liveness",
        tenant,
        session_id=decision.session.session_id,
        live=decision.live,
        score=decision.score,
        reasons=decision.reasons,
        challenge=list(decision.session.challenge),
        steps=[s.model_dump() for s in answer.steps or []],
        verification=None if v is None else answer.verification.model_dump(),  # type: ignore[union-attr]
        matched=None if v is None else v.matched,
        subject_id=decision.session.subject_id,
        face_id=None if v is None else v.face_id,
        threshold=None if v is None else v.threshold,
        model_id=frames[0].model_id if frames else None,
        antispoof={"spoof_probability": [round(f.p_spoof, 4) for f in decision.session.frames]},
        probe_sha256=[f.digest for f in decision.session.frames],
    )


def _decision(decision: Decision) -> schemas.FramesResponse:
    v = decision.verification
    return schemas.FramesResponse(
        session_id=decision.session.session_id,
        decided=True,
        frames_received=len(decision.session.frames),
        live=decision.live,
        score=decision.score,
        reasons=decision.reasons,  # type: ignore[arg-type]
        steps=[schemas.StepOut(step=s.step, observed=s.observed, frame=s.frame) for s in decision.steps],
        verification=None
        if v is None
        else schemas.VerificationOut(
            type=v.kind,  # type: ignore[arg-type]
            id=v.id,
            matched=v.matched,
            score=v.score,
            threshold=v.threshold,
            face_id=v.face_id,
        ),
    )


@client_router.get("/liveness.html", include_in_schema=False)
async def liveness_page() -> Response:
    """A demo page of the reference client (the tenant's key is typed in, or given in the URL's fragment)."""
    page = resources.files("faceauth.liveness").joinpath("liveness.html").read_text()
    return Response(page, media_type="text/html", headers={"Cache-Control": "no-store"})


@client_router.get("/liveness.js", include_in_schema=False)
async def liveness_js() -> Response:
    """The reference browser client (prompts, camera capture, upload); no key needed to load it."""
    script = resources.files("faceauth.liveness").joinpath("liveness.js").read_text()
    return Response(script, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"})
