"""1:1 verification: do 1-5 probe photos show the person of a reference (an enrolled face, or a photo)?

Probes are loaded and analysed concurrently. A probe counts as a match when its score reaches the threshold and,
unless the caller waives it, it passed the quality checks (a spoofed or blurred selfie never verifies anybody).
The answer is a match when at least `min_matches` probes match.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from faceauth.config import APISettings
from faceauth.contracts.analysis import Analysis
from faceauth.faces.repository import face_not_found
from faceauth.kit.errors import AppError
from faceauth.photos.analyzer import PhotoAnalyzer
from faceauth.photos.sources import Photo
from faceauth.storage.vectors import FaceIndex

MAX_PROBES = 5
# Rows read to find one face's vector: its revisions (one, two while being replaced).
_FACE_ROWS = 16


@dataclass(frozen=True)
class ProbeResult:
    field: str
    analysis: Analysis
    score: float | None  # None: no usable face in the probe
    matched: bool
    reason: str | None  # why it did not count, when it did not


@dataclass(frozen=True)
class Reference:
    kind: str  # "face" (enrolled), "subject" (enrolled faces of one subject) or "image"
    face_id: str | None
    analysis: Analysis | None  # for a photo reference
    model_id: str


@dataclass(frozen=True)
class Verdict:
    matched: bool
    threshold: float
    min_matches: int
    matches: int
    probes: list[ProbeResult]
    reference: Reference


def default_min_matches(probes: int) -> int:
    """More than half of the probes: one of one, two of two or three, three of four or five."""
    return probes // 2 + 1


class VerificationService:
    def __init__(self, analyzer: PhotoAnalyzer, index: FaceIndex, settings: APISettings) -> None:
        self.analyzer = analyzer
        self.index = index
        self.settings = settings

    async def verify(
        self,
        probes: list[Photo],
        *,
        tenant: str | None,
        reference_id: str | None,
        reference: Photo | None,
        threshold: float | None,
        min_matches: int | None,
        require_quality: bool = True,
        aligned: bool = False,
        reference_subject_id: str | None = None,
    ) -> Verdict:
        if not 1 <= len(probes) <= MAX_PROBES:
            raise AppError(422, "invalid_probe_count", f"send 1 to {MAX_PROBES} probe photos, not {len(probes)}")
        if sum(r is not None for r in (reference_id, reference_subject_id, reference)) != 1:
            raise AppError(
                422,
                "invalid_reference",
                "give exactly one reference: reference_id or reference_subject_id (with tenant), or a reference photo",
            )
        if (reference_id is not None or reference_subject_id is not None) and not tenant:
            raise AppError(422, "invalid_reference", "reference_id and reference_subject_id need the tenant")
        required = default_min_matches(len(probes)) if min_matches is None else min_matches
        if not 1 <= required <= len(probes):
            raise AppError(
                422, "invalid_min_matches", f"min_matches must be between 1 and the number of probes ({len(probes)})"
            )
        threshold = self.settings.effective_verify_threshold if threshold is None else threshold

        photos = [*probes, reference] if reference is not None else probes
        results = await asyncio.gather(
            *(self.analyzer.analyze(p, tenant=tenant, aligned=aligned) for p in photos), return_exceptions=True
        )
        # Bad input (an unreadable photo, a refused URL) or an outage fails the request: report the first one.
        for result in results:
            if isinstance(result, BaseException):
                raise result
        analyses: list[Analysis] = [r.analysis for r in results]  # type: ignore[union-attr]
        probe_analyses = analyses[: len(probes)]

        if reference is not None:
            ref_analysis = analyses[-1]
            if ref_analysis.embedding is None:
                reasons = [r for r in ref_analysis.reasons if r in ("no_face", "face_too_small")] or ["no_face"]
                raise AppError(
                    422,
                    "no_face_detected" if reasons == ["no_face"] else reasons[0],
                    "the reference photo has no usable face",
                    details={
                        "field": reference.field,
                        "imageQualityAssessment": ref_analysis.assessment().model_dump(),
                    },
                )
            ref = Reference("image", None, ref_analysis, ref_analysis.model_id)
            ref_vector = ref_analysis.embedding
        elif reference_subject_id is not None:
            model_id = next((a.model_id for a in probe_analyses), "")
            ref_vector = await self._subject_vectors(str(tenant), reference_subject_id, model_id)
            ref = Reference("subject", reference_subject_id, None, model_id)
        else:
            model_id = next((a.model_id for a in probe_analyses), "")
            ref_vector = await self._enrolled_vector(str(tenant), str(reference_id), model_id)
            ref = Reference("face", reference_id, None, model_id)

        results_out = [
            self._judge(source.field, analysis, ref_vector, threshold, require_quality)
            for source, analysis in zip(probes, probe_analyses, strict=True)
        ]
        matches = sum(p.matched for p in results_out)
        return Verdict(matches >= required, threshold, required, matches, results_out, ref)

    @staticmethod
    def _judge(
        field: str, analysis: Analysis, ref_vector: np.ndarray, threshold: float, require_quality: bool
    ) -> ProbeResult:
        if analysis.embedding is None:
            return ProbeResult(field, analysis, None, False, "no_face_detected")
        # A subject reference is its faces' vectors (rows): the probe's score is its best face's.
        score = float(np.max(np.atleast_2d(ref_vector) @ analysis.embedding))
        if require_quality and not analysis.passed:
            return ProbeResult(field, analysis, score, False, "quality_check_failed")
        if score < threshold:
            return ProbeResult(field, analysis, score, False, "below_threshold")
        return ProbeResult(field, analysis, score, True, None)

    async def _subject_vectors(self, tenant: str, subject_id: str, model_id: str) -> np.ndarray:
        """The vectors of the subject's faces made by `model_id`, one row each."""
        rows = await self.index.subject_faces(tenant, subject_id)
        if not rows:
            raise AppError(404, "subject_not_found", f"no subject {subject_id!r} in tenant {tenant!r}")
        vectors = []
        for face_id in sorted({r.face_id for r in rows}):
            found = await self.index.vectors(tenant, model_id=model_id, face_id=face_id, max_rows=_FACE_ROWS)
            if found.records:
                vectors.append(found.embeddings[0])
        if not vectors:
            raise AppError(
                409,
                "model_mismatch",
                f"subject {subject_id!r} has no face embedded with {model_id}: re-embed the stored faces "
                "(faceauth reembed)",
            )
        return np.stack(vectors)

    async def _enrolled_vector(self, tenant: str, face_id: str, model_id: str) -> np.ndarray:
        found = await self.index.vectors(tenant, model_id=model_id, face_id=face_id, max_rows=_FACE_ROWS)
        if found.records:
            return found.embeddings[0]
        rows = await self.index.find(tenant, face_id)
        if not rows:
            raise face_not_found(tenant, face_id)
        raise AppError(
            409,
            "model_mismatch",
            f"face {face_id!r} was enrolled with {rows[0].model_id}, the ML service now embeds with {model_id}: "
            "re-embed the stored faces (faceauth reembed)",
        )
