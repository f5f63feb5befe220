"""Turns an `Analysis` into the answers of each endpoint, and runs analyses on the compute pool."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

from faceauth.config import MLSettings
from faceauth.inference.imaging import b64decode_image
from faceauth.inference.pipeline import BATCHED_STEPS, Analysis, Check, Models, Pipeline, Prepared
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

    async def _analyze(
        self, payload: bytes | str, checks: frozenset[Check], all_faces: bool = False, aligned: bool = False
    ) -> Analysis:
        max_bytes = self.settings.max_image_bytes

        def work() -> Analysis:
            data = b64decode_image(payload, max_bytes) if isinstance(payload, str) else payload
            return self.pipeline.analyze(data, checks, all_faces=all_faces, aligned=aligned)

        analysis = await self.pool.run(work)
        self._observe(analysis)
        return analysis

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
        """`/v1/analyze` for each file, sharing one run of each model; a refused file fails only its own entry.

        `files` holds each upload's bytes, or the error already found reading it (e.g. too large).
        """
        models = self.pipeline.resolve(_ASSESS | {"embed"}, aligned=aligned)  # a missing model: 503 up front
        self.observer.batch(len(files))
        # A batch holds one unit of pool capacity per image, all at once and until its last model run ends:
        # it is N images of work, so it must be refused at the same load as N separate requests would be, and
        # no single request may be admitted in its stead while its images wait for a worker. Its jobs then go
        # to the workers unaccounted (`submit`), or they would count twice.
        with self.pool.reserve(len(files)):
            outcomes = await _all([self._prepare(f, models, aligned) for f in files])
            prepared = [o for o in outcomes if isinstance(o, Prepared)]
            # The three models are independent: on several workers they run side by side.
            steps = [self.pool.submit(self.pipeline.run_step, step, models, prepared) for step in BATCHED_STEPS]
            await _all(steps)
        for item in prepared:
            self._observe(item.analysis)
        results = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Prepared):
                results.append({"index": index, "ok": True, "analysis": self._analysis_view(outcome.analysis)})
            else:
                e = outcome.error
                results.append(
                    {"index": index, "ok": False, "error": {"code": e.code, "message": e.message, "status": e.status}}
                )
        return results

    async def _prepare(self, file: bytes | AppError, models: Models, aligned: bool) -> Prepared | _Refused:
        if isinstance(file, AppError):
            return _Refused(file)
        try:
            return await self.pool.submit(partial(self.pipeline.prepare, file, models, aligned=aligned))
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
