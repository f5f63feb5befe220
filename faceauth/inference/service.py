"""Turns an `Analysis` into the answers of each endpoint, and runs analyses on the compute pool."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

from faceauth.config import MLSettings
from faceauth.inference.batching import MicroBatcher
from faceauth.inference.imaging import b64decode_image
from faceauth.inference.pipeline import FACE_STEPS, Analysis, BatchedStep, Check, Models, Pipeline, Prepared
from faceauth.inference.runtime import ComputePool
from faceauth.kit.errors import AppError
from faceauth.kit.metrics import NULL_OBSERVER, InferenceObserver

_ASSESS: frozenset[Check] = frozenset({"nsfw", "spoof", "blur"})


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
        steps: tuple[BatchedStep, ...] = ("detect", "nsfw", "spoof", "embed")
        # Per model, the images in flight that have yet to hand it their input: what a batch may wait for.
        self._on_the_way: dict[BatchedStep, int] = dict.fromkeys(steps, 0)
        self.batchers: dict[BatchedStep, MicroBatcher[Prepared, None]] = {
            step: MicroBatcher(
                step,
                partial(pipeline.run_step, step),
                pool.submit,
                max_batch=settings.batch_max_size,
                max_wait=settings.batch_wait_ms / 1000,
                max_running=settings.batch_concurrency or pool.workers,
                on_the_way=partial(self._on_the_way.get, step, 0),
                on_batch=lambda model, images: self.observer.model_batch(model, images),
            )
            for step in steps
        }

    async def _analyze(
        self, payload: bytes | str, checks: frozenset[Check], all_faces: bool = False, aligned: bool = False
    ) -> Analysis:
        models = self.pipeline.resolve(checks, all_faces=all_faces, aligned=aligned)  # a missing model: 503 now
        with self.pool.reserve(1):
            if self._stage_now():
                item = await self._staged(payload, models, all_faces=all_faces, aligned=aligned)
                analysis = item.analysis
            else:  # the whole analysis as one job on one worker
                analysis = await self.pool.submit(self._analyze_alone, payload, checks, all_faces, aligned)
        self._observe(analysis)
        return analysis

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
        return b64decode_image(payload, self.settings.max_image_bytes) if isinstance(payload, str) else payload

    def _analyze_alone(self, payload: bytes | str, checks: frozenset[Check], all_faces: bool, aligned: bool):
        return self.pipeline.analyze(self._bytes(payload), checks, all_faces=all_faces, aligned=aligned)

    async def _staged(self, payload: bytes | str, models: Models, *, all_faces: bool, aligned: bool) -> Prepared:
        """One image through the stages, sharing each model run with whatever else is in flight.

        Only for work already covered by a pool reservation. NSFW needs no face, so it runs beside the
        detection; anti-spoof and the embedder run side by side once the face is known.
        """

        def start() -> Prepared:
            return self.pipeline.start(self._bytes(payload), models, all_faces=all_faces, aligned=aligned)

        ahead = self._steps_ahead(models, all_faces=all_faces, aligned=aligned)
        for step in ahead:
            self._on_the_way[step] += 1
        try:
            item = await self.pool.submit(start)
            nsfw = asyncio.ensure_future(self._step("nsfw", item, ahead))
            try:
                await self._step("detect", item, ahead)
                await self.pool.submit(self.pipeline.finish, item)
                await _all([self._step(step, item, ahead) for step in FACE_STEPS])
            finally:
                await asyncio.wait([nsfw])  # never leave it running past the reservation
            nsfw.result()
            return item
        finally:
            for step in ahead:  # those it never reached (no face, a refused image, ...)
                self._on_the_way[step] -= 1

    def _steps_ahead(self, models: Models, *, all_faces: bool, aligned: bool) -> set[BatchedStep]:
        ahead: set[BatchedStep] = set()
        if models.detector is not None and not all_faces and not aligned:
            ahead.add("detect")
        for step, model in (("nsfw", models.nsfw), ("spoof", models.spoof), ("embed", models.embedder)):
            if model is not None:
                ahead.add(step)  # type: ignore[arg-type]
        return ahead

    async def _step(self, step: BatchedStep, item: Prepared, ahead: set[BatchedStep]) -> None:
        if step in ahead:
            ahead.discard(step)
            self._on_the_way[step] -= 1
        if step in item.inputs:
            await self.batchers[step].run(item)

    def _observe(self, a: Analysis) -> None:
        # The pipeline already times each step (decode, detect, nsfw, spoof, blur, embed) for `timings_ms`.
        for step, ms in a.timings_ms.items():
            self.observer.model_step(step, ms / 1000)

    def _model_id(self, slot: str) -> str:
        return self.pipeline.models.slots[slot].model_id or slot  # type: ignore[index]

    # -- single checks -------------------------------------------------------------------------------

    def _nsfw(self, a: Analysis) -> dict:
        p = float(a.nsfw_probability or 0.0)
        return {"is_safe": p < self.settings.nsfw_threshold, "probability": round(p, 4)}

    def _spoof(self, a: Analysis) -> dict | None:
        if a.spoof_probability is None:
            return None
        p = a.spoof_probability
        return {"is_spoof": p >= self.settings.spoof_threshold, "probability": round(p, 4)}

    def _blur(self, a: Analysis) -> dict | None:
        if a.blur_probability is None:
            return None
        p = a.blur_probability
        return {"is_sharp": p < self.settings.blur_threshold, "probability": round(p, 4)}

    @staticmethod
    def _require_face(a: Analysis) -> None:
        if a.primary is None:
            messages = {"no_face": "no face was found", "face_too_small": "the face is too small"}
            code = a.face_issue or "no_face"
            raise AppError(422, code, messages.get(code, code))

    async def nsfw(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset({"nsfw"}))
        return {**self._nsfw(a), "model_id": self._model_id("nsfw")}

    async def spoof(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset({"spoof"}))
        self._require_face(a)
        return {**self._spoof(a), "model_id": self._model_id("spoof")}  # type: ignore[dict-item]

    async def blur(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset({"blur"}))
        self._require_face(a)
        return {**self._blur(a), "model_id": self._model_id("blur")}  # type: ignore[dict-item]

    # -- combined ------------------------------------------------------------------------------------

    def _embedding_view(self, a: Analysis) -> dict:
        embedder_id = self._model_id("embedder")
        return {
            "face_detected": a.primary is not None,
            "embedding": None if a.embedding is None else [round(float(v), 7) for v in a.embedding],
            "embedding_dim": self.pipeline.models.embedding_dim or self.settings.face_embedding_dim,
            "model_id": embedder_id,
            "face": None if a.primary is None else self.pipeline.describe_face(a.image, a.primary),
            "faces_count": len(a.faces),
        }

    def _assessment_view(self, a: Analysis) -> dict:
        nsfw, spoof, blur = self._nsfw(a), self._spoof(a), self._blur(a)
        reasons = []
        if not nsfw["is_safe"]:
            reasons.append("nsfw")
        if a.face_issue:
            reasons.append(a.face_issue)
        if spoof is not None and spoof["is_spoof"]:
            reasons.append("spoof")
        if blur is not None and not blur["is_sharp"]:
            reasons.append("blur")
        return {
            "passed": not reasons,
            "nsfw": nsfw,
            "spoof": spoof,
            "blur": blur,
            "face_detected": a.primary is not None,
            "faces_count": len(a.faces),
            "reasons": reasons,
            "skipped_checks": list(a.skipped_checks),
        }

    async def embed(self, payload: bytes | str, *, aligned: bool = False) -> dict:
        a = await self._analyze(payload, frozenset({"embed"}), aligned=aligned)
        return {**self._embedding_view(a), "face_issue": a.face_issue}

    async def assess(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, _ASSESS)
        return self._assessment_view(a)

    def _analysis_view(self, a: Analysis) -> dict:
        models = {name: slot.model_id for name, slot in self.pipeline.models.slots.items()}
        return {
            **self._assessment_view(a),
            **self._embedding_view(a),
            "models": models,
            "timings_ms": a.timings_ms,
        }

    async def analyze(self, payload: bytes | str, *, aligned: bool = False) -> dict:
        return self._analysis_view(await self._analyze(payload, _ASSESS | {"embed"}, aligned=aligned))

    async def analyze_batch(self, files: list[bytes | AppError], *, aligned: bool = False) -> list[dict]:
        """`/v1/analyze` for each file, sharing model runs; a refused file fails only its own entry.

        `files` holds each upload's bytes, or the error already found reading it (e.g. too large).
        """
        models = self.pipeline.resolve(_ASSESS | {"embed"}, aligned=aligned)  # a missing model: 503 up front
        self.observer.batch(len(files))
        # A batch holds one unit of pool capacity per image, all at once and until its last model run ends:
        # it is N images of work, so it must be refused at the same load as N separate requests would be, and
        # no single request may be admitted in its stead while its images wait for a worker. Its images then
        # go through the stages like single requests' (the micro-batchers put them in shared runs).
        with self.pool.reserve(len(files)):
            outcomes = await _all([self._one_of_batch(f, models, aligned) for f in files])
        results = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Prepared):
                self._observe(outcome.analysis)
                results.append({"index": index, "ok": True, "analysis": self._analysis_view(outcome.analysis)})
            else:
                e = outcome.error
                results.append(
                    {"index": index, "ok": False, "error": {"code": e.code, "message": e.message, "status": e.status}}
                )
        return results

    async def _one_of_batch(self, file: bytes | AppError, models: Models, aligned: bool) -> Prepared | _Refused:
        if isinstance(file, AppError):
            return _Refused(file)
        try:
            return await self._staged(file, models, all_faces=False, aligned=aligned)
        except AppError as exc:
            if exc.status >= 500:
                raise
            return _Refused(exc)  # this image's fault (invalid_image, image_truncated, ...): reported in its entry

    async def detect(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset(), all_faces=True)
        faces = [self.pipeline.describe_face(a.image, f) for f in a.faces]
        return {
            "width": a.image.original_width,
            "height": a.image.original_height,
            "faces_count": len(faces),
            "faces": faces,
        }


async def _all(awaitables: list) -> list:
    """Like gather, but waits for every job before raising the first failure, so none outlives the
    reservation that accounts for it."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
