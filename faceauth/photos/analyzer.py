"""The Face API's one way to the ML service: read a photo, have it analysed (quality checks and embedding in one
call) or its faces detected. A refusal of the photo itself names the request field it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceauth.contracts.analysis import Analysis
from faceauth.kit.errors import AppError
from faceauth.ml_client import MLClient, MLImageRejected
from faceauth.photos.loader import PhotoLoader
from faceauth.photos.sources import Photo
from faceauth.web.handlers import ml_service_error

# The photo's fault (as opposed to the service's): the error says which field held it.
_PHOTO_STATUSES = (400, 413, 415, 422)


@dataclass(frozen=True)
class Analysed:
    """A photo, its bytes, and what the ML service found in them."""

    photo: Photo
    image: bytes
    analysis: Analysis


class PhotoAnalyzer:
    def __init__(self, loader: PhotoLoader, ml: MLClient) -> None:
        self.loader = loader
        self.ml = ml

    async def analyze(
        self, photo: Photo, *, tenant: str | None, aligned: bool = False, every_face: bool = False
    ) -> Analysed:
        """`every_face`: every usable face of the photo is checked and embedded too (`analysis.faces`)."""
        image = await self.loader.read(photo, tenant=tenant)
        try:
            return Analysed(photo, image, await self.ml.analyze(image, aligned=aligned, every_face=every_face))
        except MLImageRejected as exc:
            raise _naming(exc, photo.field) from None

    async def analyze_each(
        self, photos: list[Photo | AppError], *, tenant: str | None, aligned: bool = False
    ) -> list[Analysed | AppError]:
        """Several photos, read concurrently and analysed in one batch call; each entry is the photo's analysis
        or why that photo alone failed (its input, its download, or the ML service refusing it). The ML service
        being down fails the whole call."""
        results: list[Analysed | AppError | None] = [p if isinstance(p, AppError) else None for p in photos]
        pending = [(i, p) for i, p in enumerate(photos) if isinstance(p, Photo)]
        read = await self.loader.read_each([p for _, p in pending], tenant=tenant)
        loaded = []
        for (i, photo), image in zip(pending, read, strict=True):
            if isinstance(image, AppError):
                results[i] = image
            else:
                loaded.append((i, photo, image))
        if loaded:
            analyses = await self.ml.analyze_batch([image for _, _, image in loaded], aligned=aligned)
            for (i, photo, image), analysis in zip(loaded, analyses, strict=True):
                results[i] = (
                    ml_service_error(analysis)
                    if isinstance(analysis, MLImageRejected)
                    else Analysed(photo, image, analysis)
                )
        return [r for r in results if r is not None]

    async def analyze_stored(self, image: bytes, *, request_id: str | None = None) -> Analysis:
        """A stored enrolment image (no request field to name; re-embedding)."""
        return await self.ml.analyze(image, request_id=request_id)

    async def embedder_model_id(self) -> str:
        """The id of the embedding model the ML service has loaded now (503 when it is not ready)."""
        body = await self.ml.ready()
        model_id = ((body.get("models") or {}).get("embedder") or {}).get("model_id")
        if not model_id:
            raise AppError(503, "ml_service_not_ready", "the ML service has no embedding model loaded")
        return str(model_id)

    async def detect(self, photo: Photo, *, tenant: str | None) -> dict[str, Any]:
        image = await self.loader.read(photo, tenant=tenant)
        try:
            return await self.ml.detect(image)
        except MLImageRejected as exc:
            raise _naming(exc, photo.field) from None


def _naming(exc: MLImageRejected, field: str) -> MLImageRejected:
    if exc.status in _PHOTO_STATUSES:
        exc.details = {**(exc.details or {}), "field": field}
    return exc
