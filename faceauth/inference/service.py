"""Turns an `Analysis` into the answers of each endpoint, and runs analyses on the compute pool."""

from __future__ import annotations

from faceauth.config import MLSettings
from faceauth.inference.imaging import b64decode_image
from faceauth.inference.pipeline import Analysis, Check, Pipeline
from faceauth.inference.runtime import ComputePool
from faceauth.kit.errors import AppError

_ASSESS: frozenset[Check] = frozenset({"nsfw", "spoof", "blur"})


class InferenceService:
    def __init__(self, pipeline: Pipeline, pool: ComputePool, settings: MLSettings) -> None:
        self.pipeline = pipeline
        self.pool = pool
        self.settings = settings

    async def _analyze(self, payload: bytes | str, checks: frozenset[Check], all_faces: bool = False) -> Analysis:
        max_bytes = self.settings.max_image_bytes

        def work() -> Analysis:
            data = b64decode_image(payload, max_bytes) if isinstance(payload, str) else payload
            return self.pipeline.analyze(data, checks, all_faces=all_faces)

        return await self.pool.run(work)

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
        }

    async def embed(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset({"embed"}))
        return {**self._embedding_view(a), "face_issue": a.face_issue}

    async def assess(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, _ASSESS)
        return self._assessment_view(a)

    async def analyze(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, _ASSESS | {"embed"})
        models = {name: slot.model_id for name, slot in self.pipeline.models.slots.items()}
        return {
            **self._assessment_view(a),
            **self._embedding_view(a),
            "models": models,
            "timings_ms": a.timings_ms,
        }

    async def detect(self, payload: bytes | str) -> dict:
        a = await self._analyze(payload, frozenset(), all_faces=True)
        faces = [self.pipeline.describe_face(a.image, f) for f in a.faces]
        return {
            "width": a.image.original_width,
            "height": a.image.original_height,
            "faces_count": len(faces),
            "faces": faces,
        }
