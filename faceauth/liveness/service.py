"""Liveness sessions: issue a random challenge, collect the frames, judge them once.

The judgement (docs/LIVENESS.md) fails with one reason code per failed check: session_expired, session_used,
implausible_timestamps, no_face, static_frames, identity_changed, spoof_suspected, wrong_step_order,
step_not_observed. With a subject or reference face, the best frame is also verified against it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from faceauth.config import APISettings
from faceauth.kit.errors import AppError
from faceauth.liveness import challenge as ch
from faceauth.liveness.repository import Session, SessionRepository, new_session_id
from faceauth.photos.analyzer import Analysed, PhotoAnalyzer
from faceauth.photos.sources import Photo
from faceauth.replay.guard import Fingerprint, ReplayGuard
from faceauth.storage.vectors import FaceIndex
from faceauth.verification.service import VerificationService

MIN_FRAMES = 3
MAX_FRAMES = 12


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class VerificationResult:
    kind: str  # "subject" or "face"
    id: str
    matched: bool
    score: float
    threshold: float
    face_id: str | None  # the enrolled face that scored best


@dataclass(frozen=True)
class Decision:
    session: Session
    live: bool
    score: float
    reasons: list[str]
    steps: list[ch.StepSeen]
    verification: VerificationResult | None


@dataclass(frozen=True)
class Collected:
    session: Session  # more frames may follow


class LivenessService:
    def __init__(
        self,
        sessions: SessionRepository,
        analyzer: PhotoAnalyzer,
        index: FaceIndex,
        verification: VerificationService,
        settings: APISettings,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.replay = replay
        self.sessions = sessions
        self.analyzer = analyzer
        self.index = index
        self.verification = verification
        self.settings = settings
        self.thresholds = ch.Thresholds(
            settings.liveness_yaw_degrees, settings.liveness_pitch_degrees, settings.liveness_closer_ratio
        )

    async def start(self, tenant: str, *, subject_id: str | None, reference_id: str | None) -> Session:
        if subject_id and reference_id:
            raise AppError(422, "invalid_reference", "give subject_id or reference_id, not both")
        # A liveness-with-verification session names someone who exists now (404 before any frame is captured).
        if subject_id and not await self.index.subject_faces(tenant, subject_id):
            raise AppError(404, "subject_not_found", f"no subject {subject_id!r} in tenant {tenant!r}")
        if reference_id and not await self.index.find(tenant, reference_id):
            raise AppError(404, "face_not_found", f"no face {reference_id!r} in tenant {tenant!r}")
        now = _now_ms()
        session = Session(
            session_id=new_session_id(),
            tenant=tenant,
            challenge=ch.random_challenge(),
            created_at_ms=now,
            expires_at_ms=now + int(self.settings.liveness_session_seconds * 1000),
            subject_id=subject_id,
            reference_id=reference_id,
        )
        await self.sessions.create(session)
        return session

    async def submit(
        self, tenant: str, session_id: str, frames: list[Photo], timestamps: list[float], *, final: bool
    ) -> Decision | Collected:
        if len(timestamps) != len(frames):
            raise AppError(
                422, "timestamps_mismatch", f"{len(frames)} frames but {len(timestamps)} timestamps: one per frame"
            )
        if not frames:
            raise AppError(422, "invalid_frame_count", "send at least one frame")
        session = await self.sessions.get(tenant, session_id)
        # Early answers that need no analysis: a used or expired session decides nothing new.
        if session.used_at_ms is not None:
            return self._refused(session, "session_used")
        if _now_ms() > session.expires_at_ms:
            return self._refused(session, "session_expired")
        if len(session.frames) + len(frames) > MAX_FRAMES:
            raise AppError(
                422,
                "invalid_frame_count",
                f"a session takes {MIN_FRAMES} to {MAX_FRAMES} frames in all; it has {len(session.frames)}, "
                f"this call sent {len(frames)}",
            )

        facts = [self._facts(a, t) for a, t in zip(await self._analyse(tenant, frames), timestamps, strict=True)]
        async with self.sessions.changing(tenant, session_id) as change:
            # Read again under the lock: another replica may have claimed it meanwhile.
            if change.session.used_at_ms is not None:
                return self._refused(change.session, "session_used")
            now = _now_ms()
            if now > change.session.expires_at_ms:
                return self._refused(change.session, "session_expired")
            change.append(facts)
            if not final:
                return Collected(change.session)
            if len(change.session.frames) < MIN_FRAMES:
                raise AppError(
                    422,
                    "invalid_frame_count",
                    f"a session takes {MIN_FRAMES} to {MAX_FRAMES} frames in all, not {len(change.session.frames)}",
                )
            change.claim(now)
            session = change.session
        return await self._judge(session, now)

    async def _analyse(self, tenant: str, frames: list[Photo]) -> list[Analysed]:
        results = await self.analyzer.analyze_each(list(frames), tenant=tenant)
        for frame, result in zip(frames, results, strict=True):
            if isinstance(result, AppError):  # a frame that is not an image fails the request, naming it
                result.details = {**(result.details or {}), "field": frame.field}
                raise result
        return results  # type: ignore[return-value]

    @staticmethod
    def _facts(analysed: Analysed, timestamp_ms: float) -> ch.FrameFacts:
        a = analysed.analysis
        digest = hashlib.sha256(analysed.image).hexdigest()
        if a.face is None or a.embedding is None or a.face.pose is None:
            return ch.FrameFacts(digest, float(timestamp_ms), face=False)
        return ch.FrameFacts(
            digest=digest,
            timestamp_ms=float(timestamp_ms),
            face=True,
            yaw=a.face.pose.yaw,
            pitch=a.face.pose.pitch,
            # The face's size as a share of the frame (the square root of its area share): resolution-free.
            width=a.face.area_fraction**0.5,
            p_spoof=a.spoof.probability if a.spoof is not None else 0.0,
            quality=a.face.quality,
            embedding=tuple(float(x) for x in a.embedding),
            model_id=a.model_id,
            landmarks=tuple(float(v) for point in a.face.landmarks for v in point),
        )

    def _refused(self, session: Session, reason: str) -> Decision:
        return Decision(session, False, 0.0, [reason], [ch.StepSeen(s, False, None) for s in session.challenge], None)

    async def _judge(self, session: Session, now_ms: int) -> Decision:
        frames = session.frames
        reasons: list[str] = []
        if not ch.timestamps_plausible(frames, now_ms - session.created_at_ms):
            reasons.append("implausible_timestamps")
        if not all(f.face for f in frames):
            reasons.append("no_face")
        if ch.static(frames):
            reasons.append("static_frames")
        same, best, _lowest = ch.identity_kept(frames, self.settings.liveness_identity_threshold)
        if not same:
            reasons.append("identity_changed")
        faces = [f for f in frames if f.face]
        live_probability = 1.0 - (float(np.mean([f.p_spoof for f in faces])) if faces else 1.0)
        if faces and 1.0 - live_probability >= self.settings.liveness_spoof_threshold:
            reasons.append("spoof_suspected")
        steps = ch.follow(session.challenge, frames, self.thresholds)
        if not all(s.observed for s in steps):
            missing = [s.step for s in steps if not s.observed]
            # Every step's movement is there, just not in the challenge's order: a replay of another challenge.
            if all(ch.seen_anywhere(step, frames, self.thresholds) for step in missing):
                reasons.append("wrong_step_order")
            else:
                reasons.append("step_not_observed")
        if await self._replayed(session):
            reasons.append("replayed_probe")
        done = sum(s.observed for s in steps) / len(steps)
        score = round(done * live_probability * (1.0 if same and "static_frames" not in reasons else 0.0), 6)
        verification = None
        if best is not None and (session.subject_id or session.reference_id):
            verification = await self._verify(session, frames[best])
        return Decision(session, not reasons, score, reasons, steps, verification)

    async def _replayed(self, session: Session) -> bool:
        """A frame that repeats a recent probe of the session's subject, or its enrolment photo (sessions that name
        a subject or a face only: without one there is no window to compare with)."""
        named = session.subject_id or session.reference_id
        if not named or self.replay is None or not self.replay.enabled(session.tenant):
            return False
        if session.subject_id:
            face_ids = [r.face_id for r in await self.index.subject_faces(session.tenant, session.subject_id)]
            subject = session.subject_id
        else:
            rows = await self.index.find(session.tenant, str(session.reference_id))
            face_ids, subject = [str(session.reference_id)], rows[0].subject_id if rows else str(session.reference_id)
        frames = [f for f in session.frames if f.face and f.landmarks]
        if not frames:
            return False
        enrolled = []
        for face_id in face_ids:
            found = await self.index.vectors(session.tenant, model_id=frames[0].model_id, face_id=face_id, max_rows=16)
            enrolled.extend(found.embeddings[:1])
        replayed = False
        for frame in frames:
            fingerprint = Fingerprint.from_parts(frame.digest, frame.embedding, frame.landmarks)
            replayed = await self.replay.check_and_record(session.tenant, subject, fingerprint, enrolled) or replayed
        return replayed

    async def _verify(self, session: Session, frame: ch.FrameFacts) -> VerificationResult:
        threshold = self.settings.effective_verify_threshold
        if session.reference_id:
            ids = [session.reference_id]
            kind, named = "face", session.reference_id
        else:
            ids = [r.face_id for r in await self.index.subject_faces(session.tenant, str(session.subject_id))]
            kind, named = "subject", str(session.subject_id)
        best_score, best_face = -1.0, None
        for face_id in ids:
            try:
                vector = await self.verification.enrolled_vector(session.tenant, face_id, frame.model_id)
            except AppError as exc:
                if exc.status == 404:  # removed since the session started: it verifies nobody
                    continue
                raise
            score = float(np.dot(frame.vector, vector))
            if score > best_score:
                best_score, best_face = score, face_id
        return VerificationResult(kind, named, best_score >= threshold, round(best_score, 6), threshold, best_face)
