"""One pass over one photo: decode once, detect once, then only the checks a request asks for.

Every endpoint is a view of the same `analyze` call, so `/v1/analyze` (what the Face API uses) costs one
decode, one detector run and one alignment, however many checks it reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from faceauth.config import MLSettings
from faceauth.inference.imaging import DecodedImage, decode_image
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.embedder import align_face
from faceauth.inference.models.geometry import estimate_pose, face_quality
from faceauth.inference.models.loader import ModelSet

Check = Literal["embed", "nsfw", "spoof", "blur"]
# A face this many px across in the coarse detector input has landmarks precise enough for alignment.
_COARSE_MIN_FACE_PX = 48
ALL_CHECKS: frozenset[Check] = frozenset({"embed", "nsfw", "spoof", "blur"})


@dataclass
class FaceReport:
    detection: Detection  # in decoded-image coordinates
    area_fraction: float
    p_blur: float | None = None


@dataclass
class Analysis:
    image: DecodedImage
    faces: list[FaceReport]
    primary: FaceReport | None
    # Why there is no usable face (no_face, face_too_small) or why the face is not accepted (multiple_faces).
    face_issue: str | None
    nsfw_probability: float | None = None
    spoof_probability: float | None = None
    blur_probability: float | None = None
    embedding: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round((now - self.last) * 1000, 2)
        self.last = now


class Pipeline:
    def __init__(self, models: ModelSet, settings: MLSettings) -> None:
        self.models = models
        self.settings = settings

    def decode(self, data: bytes, *, full_resolution: bool = True) -> DecodedImage:
        target = None if full_resolution else (self.settings.decode_target_side or None)
        return decode_image(data, max_pixels=self.settings.max_image_pixels, target_side=target)

    def _detect(self, detector, image: DecodedImage, all_faces: bool) -> list[Detection]:
        """Faces, largest first. For the subject face a coarse pass usually suffices (selfies have big faces);
        it is kept only when its largest face is well inside what the coarse size resolves."""
        coarse = self.settings.face_detection_coarse_size
        if not all_faces and coarse and coarse < min(self.settings.detection_size):
            faces = detector.detect(image.rgb, input_size=(coarse, coarse))
            if faces:
                face = faces[0]
                side_px = min(face.width, face.height) * detector.input_scale(image.rgb, (coarse, coarse))
                area_fraction = face.area / float(image.width * image.height)
                if side_px >= _COARSE_MIN_FACE_PX and area_fraction >= self.settings.face_area_threshold:
                    return faces
        return detector.detect(image.rgb)

    def analyze(self, data: bytes, checks: frozenset[Check], *, all_faces: bool = False) -> Analysis:
        """Run in a worker thread. `all_faces` also scores sharpness for every face (for /v1/detect)."""
        # Resolve every model the request needs before doing work, so a missing one fails fast (503).
        needs_face = bool(checks & {"embed", "spoof", "blur"}) or all_faces
        detector = self.models.require("detector") if needs_face else None
        embedder = self.models.require("embedder") if "embed" in checks else None
        nsfw = self.models.require("nsfw") if "nsfw" in checks else None
        spoof = self.models.require("spoof") if "spoof" in checks else None
        if "blur" in checks:
            blur = self.models.require("blur")
        else:  # /v1/detect reports per-face sharpness when it can, but does not need it
            blur = self.models.slots["blur"].model if all_faces and self.models.ready("blur") else None

        timings: dict[str, float] = {}
        timer = _Timer(timings)
        # Blur is judged on the photo's own pixels; every other check is content with a reduced decode.
        image = self.decode(data, full_resolution=blur is not None)
        timer.lap("decode")

        faces: list[FaceReport] = []
        primary: FaceReport | None = None
        face_issue: str | None = None
        if detector is not None:
            image_area = float(image.width * image.height)
            faces = [FaceReport(d, d.area / image_area) for d in self._detect(detector, image, all_faces)]
            timer.lap("detect")
            usable = [f for f in faces if f.area_fraction >= self.settings.face_area_threshold]
            if not faces:
                face_issue = "no_face"
            elif not usable:
                face_issue = "face_too_small"
            else:
                primary = usable[0]  # faces are sorted largest first
                if len(usable) > 1 and self.settings.multiple_faces_policy == "reject":
                    face_issue = "multiple_faces"

        analysis = Analysis(image=image, faces=faces, primary=primary, face_issue=face_issue, timings_ms=timings)
        if nsfw is not None:
            analysis.nsfw_probability = nsfw.probability(image)
            timer.lap("nsfw")
        judged = faces if all_faces else [primary] if primary is not None else []
        if blur is not None and judged:
            for report in judged:
                report.p_blur = blur.probability(image, report.detection)
            analysis.blur_probability = None if primary is None else primary.p_blur
            timer.lap("blur")
        if primary is not None:
            face = primary.detection
            if spoof is not None:
                analysis.spoof_probability = spoof.probability(image, face)
                timer.lap("spoof")
            if embedder is not None:
                crop = align_face(image.rgb, face.landmarks)
                analysis.embedding = embedder.embed_aligned([crop])[0]
                timer.lap("embed")
        return analysis

    # -- views -------------------------------------------------------------------------------------------

    def describe_face(self, image: DecodedImage, report: FaceReport) -> dict:
        """A face in *original* image coordinates (boxes and landmarks match the uploaded photo)."""
        det = report.detection
        inv = 1.0 / image.scale
        yaw, pitch, roll = estimate_pose(det.landmarks)
        return {
            "box": [round(float(v) * inv, 1) for v in det.box],
            "score": round(det.score, 4),
            "landmarks": [[round(float(x) * inv, 1), round(float(y) * inv, 1)] for x, y in det.landmarks],
            "pose": {"yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)},
            "area_fraction": round(report.area_fraction, 5),
            "quality": round(face_quality(det.score, det.landmarks, report.p_blur, image.scale), 4),
            "sharpness": None if report.p_blur is None else round(1.0 - report.p_blur, 4),
        }
