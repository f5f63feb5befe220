"""Runs analyses on the compute pool (admission, the stages, micro-batching) and turns each one's findings into
the answers of the endpoints (faceauth.contracts.analysis, in the bodies of faceauth.inference.schemas)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from faceauth.config import MLSettings
from faceauth.contracts.analysis import (
    Analysis,
    BatchItemFailed,
    BatchItemOk,
    Face,
    FaceAnalysis,
    ItemError,
    Pose,
)
from faceauth.inference.batching import MicroBatcher
from faceauth.inference.checks.base import CheckName, CheckResult
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models.geometry import estimate_pose, face_quality
from faceauth.inference.modelset import CHECK_TYPES
from faceauth.inference.pipeline import FaceReport, Findings, Pipeline, Plan, Prepared, Task
from faceauth.inference.runtime import ComputePool
from faceauth.inference.schemas import (
    AnalyzeResponse,
    AssessResponse,
    BatchAnalyzeResponse,
    BlurResponse,
    DetectResponse,
    EmbedResponse,
    NsfwResponse,
    SpoofResponse,
)
from faceauth.kit.bodies import decode_base64_image
from faceauth.kit.errors import AppError
from faceauth.kit.metrics import NULL_OBSERVER, InferenceObserver

_ASSESS: frozenset[Task] = frozenset({"nsfw", "spoof", "blur"})
_CheckBody = TypeVar("_CheckBody", NsfwResponse, SpoofResponse, BlurResponse)


@dataclass(frozen=True)
class _Refused:
    """A batch file refused on its own (kept apart from exceptions, which fail the whole request)."""

    error: AppError


class InferenceService:
    # The app points this at its metrics (time per pipeline step, batch sizes); a no-op otherwise.
    observer: InferenceObserver = NULL_OBSERVER

    def __init__(self, pipeline: Pipeline, pool: ComputePool, settings: MLSettings) -> None:
        self.pipeline = pipeline
        self.pool = pool
        self.settings = settings
        # Per batched step, the images in flight that have yet to hand it their input: what a batch may wait for.
        self._on_the_way: defaultdict[str, int] = defaultdict(int)
        self.batchers: dict[str, MicroBatcher[Prepared, None]] = {}

    def _batcher(self, step: str) -> MicroBatcher[Prepared, None]:
        """The step's micro-batcher, made when an image first brings the step an input."""
        batcher = self.batchers.get(step)
        if batcher is None:
            batcher = self.batchers[step] = MicroBatcher(
                step,
                partial(self.pipeline.run_step, step),
                self.pool.submit,
                max_batch=self.settings.batch_max_size,
                max_wait=self.settings.batch_wait_ms / 1000,
                max_running=self.settings.batch_concurrency or self.pool.workers,
                on_the_way=partial(self._on_the_way.get, step, 0),
                on_batch=lambda model, images: self.observer.model_batch(model, images),
            )
        return batcher

    async def _analyze(
        self,
        payload: bytes | str,
        tasks: frozenset[Task],
        all_faces: bool = False,
        aligned: bool = False,
        every_face: bool = False,
    ) -> Findings:
        # A missing model: 503 now.
        plan = self.pipeline.resolve(tasks, all_faces=all_faces, aligned=aligned, every_face=every_face)
        with self.pool.reserve(1):
            if self._stage_now():
                findings = (await self._staged(payload, plan)).findings
            else:  # the whole analysis as one job on one worker
                findings = await self.pool.submit(self._analyze_alone, payload, plan)
        self._observe(findings)
        return findings

    def _stage_now(self) -> bool:
        """Through the stages and micro-batchers, or as one job? (ML_SERVICE_BATCHING, for a request that
        already holds its pool unit.)"""
        mode = self.settings.batching
        if mode != "auto":
            return mode == "on"
        if self.settings.ml_device != "cpu":
            return True
        # On a CPU staging pays while workers would otherwise idle: NSFW, detection and the embedder of one
        # photo then run side by side. Once requests can keep every worker busy, one job each costs least.
        return self.pool.in_flight <= max(1, self.pool.workers // 2)

    def _bytes(self, payload: bytes | str) -> bytes:
        return decode_base64_image(payload, self.settings.max_image_bytes) if isinstance(payload, str) else payload

    def _analyze_alone(self, payload: bytes | str, plan: Plan) -> Findings:
        return self.pipeline.run(self._bytes(payload), plan)

    async def _staged(self, payload: bytes | str, plan: Plan) -> Prepared:
        """One image through the stages, sharing each model run with whatever else is in flight.

        Only for work already covered by a pool reservation. The checks of the whole photo (NSFW) need no
        face, so they run beside the detection; the face checks (anti-spoof) and the embedder run side by
        side once the face is known.
        """

        def start() -> Prepared:
            return self.pipeline.start(self._bytes(payload), plan)

        ahead = set(plan.steps)
        for step in ahead:
            self._on_the_way[step] += 1
        try:
            item = await self.pool.submit(start)
            beside = [asyncio.ensure_future(self._step(step, item, ahead)) for step in plan.photo_steps]
            try:
                await self._step("detect", item, ahead)
                await self.pool.submit(self.pipeline.finish, item)
                await _all([self._step(step, item, ahead) for step in plan.face_steps])
            finally:
                if beside:
                    await asyncio.wait(beside)  # never leave them running past the reservation
            for task in beside:
                task.result()
            return item
        finally:
            for step in ahead:  # those it never reached (no face, a refused image, ...)
                self._on_the_way[step] -= 1

    async def _step(self, step: str, item: Prepared, ahead: set[str]) -> None:
        if step in ahead:
            ahead.discard(step)
            self._on_the_way[step] -= 1
        if step in item.inputs:
            await self._batcher(step).run(item)

    def _observe(self, f: Findings) -> None:
        # The pipeline already times each step (decode, detect, nsfw, spoof, blur, embed) for `timings_ms`.
        for step, ms in f.timings_ms.items():
            self.observer.model_step(step, ms / 1000)

    def _model_id(self, slot: str) -> str:
        return self.pipeline.models.slots[slot].model_id or slot  # type: ignore[index]

    # -- single checks -------------------------------------------------------------------------------

    @staticmethod
    def _verdict(f: Findings, name: CheckName) -> CheckResult | None:
        """The check's answer, or None when it did not run (not asked for, or no usable face)."""
        check, probability = f.plan.check(name), f.probabilities.get(name)
        return None if check is None or probability is None else check.verdict(probability)

    @staticmethod
    def _flagged(f: Findings, pixels: set[str]) -> list[str]:
        """The names of the checks that looked at these pixels and found the photo bad, in check order."""
        return [
            check.name
            for check in f.plan.checks
            if check.pixels in pixels and (p := f.probabilities.get(check.name)) is not None and check.flags(p)
        ]

    @staticmethod
    def _require_face(f: Findings) -> None:
        if f.primary is None:
            messages = {"no_face": "no face was found", "face_too_small": "the face is too small"}
            code = f.face_issue or "no_face"
            raise AppError(422, code, messages.get(code, code))

    def _check_answer(self, f: Findings, name: CheckName, body: type[_CheckBody]) -> _CheckBody:
        return body(**dict(self._verdict(f, name) or {}), model_id=self._model_id(name))

    async def nsfw(self, payload: bytes | str) -> NsfwResponse:
        f = await self._analyze(payload, frozenset({"nsfw"}))
        return self._check_answer(f, "nsfw", NsfwResponse)

    async def spoof(self, payload: bytes | str) -> SpoofResponse:
        f = await self._analyze(payload, frozenset({"spoof"}))
        self._require_face(f)
        return self._check_answer(f, "spoof", SpoofResponse)

    async def blur(self, payload: bytes | str) -> BlurResponse:
        f = await self._analyze(payload, frozenset({"blur"}))
        self._require_face(f)
        return self._check_answer(f, "blur", BlurResponse)

    # -- combined ------------------------------------------------------------------------------------

    def _embedding_fields(self, f: Findings) -> dict[str, Any]:
        return {
            "face_detected": f.primary is not None,
            "embedding": f.embedding,
            "embedding_dim": self.pipeline.models.embedding_dim or self.settings.face_embedding_dim or 0,
            "model_id": self._model_id("embedder"),
            "face": None if f.primary is None else describe_face(f.image, f.primary),
            "faces_count": len(f.faces),
        }

    def _assessment_fields(self, f: Findings) -> dict[str, Any]:
        # The photo's own checks first, then what is wrong with the face, then what the face checks found.
        reasons = self._flagged(f, {"photo"})
        if f.face_issue:
            reasons.append(f.face_issue)
        reasons += self._flagged(f, {"face", "native_face"})
        return {
            "passed": not reasons,
            **{name: self._verdict(f, name) for name in CHECK_TYPES},
            "face_detected": f.primary is not None,
            "faces_count": len(f.faces),
            "reasons": reasons,
            "skipped_checks": list(f.skipped_checks),
        }

    def _analysis_fields(self, f: Findings) -> dict[str, Any]:
        return {
            **self._assessment_fields(f),
            **self._embedding_fields(f),
            "faces": [self._face_analysis(f, report) for report in f.subjects] if f.plan.every_face else None,
            "models": {name: slot.model_id for name, slot in self.pipeline.models.slots.items()},
            "timings_ms": f.timings_ms,
        }

    @staticmethod
    def _face_analysis(f: Findings, report: FaceReport) -> FaceAnalysis:
        """One face of faces=all: the photo's own checks (nsfw) count for every face, the face checks its own."""
        reasons = InferenceService._flagged(f, {"photo"})
        verdicts: dict[str, Any] = {}
        for check in f.plan.checks:
            probability = report.probabilities.get(check.name)
            if check.pixels == "photo" or probability is None:
                continue
            verdicts[check.name] = check.verdict(probability)
            if check.flags(probability):
                reasons.append(check.name)
        return FaceAnalysis.model_construct(
            face=describe_face(f.image, report),
            passed=not reasons,
            reasons=reasons,
            spoof=verdicts.get("spoof"),
            blur=verdicts.get("blur"),
            embedding=report.embedding,
        )

    # The answers below are built with `model_construct`: every value is already of its field's type (the
    # embedding a float32 vector), and validating them again would cost /v1/analyze time for nothing.

    async def embed(self, payload: bytes | str, *, aligned: bool = False) -> EmbedResponse:
        f = await self._analyze(payload, frozenset({"embed"}), aligned=aligned)
        return EmbedResponse.model_construct(**self._embedding_fields(f), face_issue=f.face_issue)

    async def assess(self, payload: bytes | str) -> AssessResponse:
        f = await self._analyze(payload, _ASSESS)
        return AssessResponse.model_construct(**self._assessment_fields(f))

    async def analyze(
        self, payload: bytes | str, *, aligned: bool = False, every_face: bool = False
    ) -> AnalyzeResponse:
        f = await self._analyze(payload, _ASSESS | {"embed"}, aligned=aligned, every_face=every_face)
        return AnalyzeResponse.model_construct(**self._analysis_fields(f))

    async def analyze_batch(
        self, files: list[bytes | AppError], *, aligned: bool = False, every_face: bool = False
    ) -> BatchAnalyzeResponse:
        """`/v1/analyze` for each file, sharing model runs; a refused file fails only its own entry.

        `files` holds each upload's bytes, or the error already found reading it (e.g. too large).
        """
        # A missing model: 503 up front.
        plan = self.pipeline.resolve(_ASSESS | {"embed"}, aligned=aligned, every_face=every_face)
        self.observer.batch(len(files))
        # A batch holds one unit of pool capacity per image, all at once and until its last model run ends:
        # it is N images of work, so it must be refused at the same load as N separate requests would be, and
        # no single request may be admitted in its stead while its images wait for a worker. Its images then
        # go through the stages like single requests' (the micro-batchers put them in shared runs).
        with self.pool.reserve(len(files)):
            outcomes = await _all([self._one_of_batch(file, plan) for file in files])
        results: list[BatchItemOk | BatchItemFailed] = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Prepared):
                self._observe(outcome.findings)
                analysis = Analysis.model_construct(**self._analysis_fields(outcome.findings))
                results.append(BatchItemOk.model_construct(index=index, ok=True, analysis=analysis))
            else:
                e = outcome.error
                error = ItemError(code=e.code, message=e.message, status=e.status)
                results.append(BatchItemFailed(index=index, ok=False, error=error))
        return BatchAnalyzeResponse.model_construct(results=results)

    async def _one_of_batch(self, file: bytes | AppError, plan: Plan) -> Prepared | _Refused:
        if isinstance(file, AppError):
            return _Refused(file)
        try:
            return await self._staged(file, plan)
        except AppError as exc:
            if exc.status >= 500:
                raise
            return _Refused(exc)  # this image's fault (invalid_image, image_truncated, ...): reported in its entry

    async def detect(self, payload: bytes | str) -> DetectResponse:
        f = await self._analyze(payload, frozenset(), all_faces=True)
        faces = [describe_face(f.image, report) for report in f.faces]
        return DetectResponse.model_construct(
            width=f.image.original_width, height=f.image.original_height, faces_count=len(faces), faces=faces
        )


def describe_face(image: DecodedImage, report: FaceReport) -> Face:
    """A face in *original* image coordinates (boxes and landmarks match the uploaded photo)."""
    det = report.detection
    inv = 1.0 / image.scale
    pose = None
    if not report.assumed:  # a pose read off template landmarks would always be frontal: say unknown
        yaw, pitch, roll = estimate_pose(det.landmarks)
        pose = Pose.model_construct(yaw=round(yaw, 1), pitch=round(pitch, 1), roll=round(roll, 1))
    p_blur = report.probabilities.get("blur")
    return Face.model_construct(
        box=[round(float(v) * inv, 1) for v in det.box],
        score=round(det.score, 4),
        landmarks=[[round(float(x) * inv, 1), round(float(y) * inv, 1)] for x, y in det.landmarks],
        pose=pose,
        area_fraction=round(report.area_fraction, 5),
        quality=round(face_quality(det.score, det.landmarks, p_blur, image.scale), 4),
        sharpness=None if p_blur is None else round(1.0 - p_blur, 4),
    )


async def _all(awaitables: list) -> list:
    """Like gather, but waits for every job before raising the first failure, so none outlives the
    reservation that accounts for it."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
