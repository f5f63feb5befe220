"""One pass over one photo: decode once, detect once, then only the checks a request asks for.

Every endpoint is a view of the same `analyze` call, so `/v1/analyze` (what the Face API uses) costs one
decode, one detector run and one alignment, however many checks it reports.

The work is in two stages so a batch can share model runs: `prepare` does everything per image (decode,
detect, blur, and each model's input: letterbox, context crop, aligned face); `run_step` runs one model
(nsfw, spoof, embed) once over the prepared inputs of any number of images. `analyze` is both, for one image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from faceauth.config import MLSettings
from faceauth.inference.imaging import DecodedImage, decode_image
from faceauth.inference.models.detector import Detection
from faceauth.inference.models.embedder import align_face, crop_template_landmarks, crop_to_aligned
from faceauth.inference.models.geometry import estimate_pose, face_quality
from faceauth.inference.models.loader import ModelSet

Check = Literal["embed", "nsfw", "spoof", "blur"]
# The checks whose model runs once over a whole batch; the others are per-image work.
BatchedStep = Literal["nsfw", "spoof", "embed"]
BATCHED_STEPS: tuple[BatchedStep, ...] = ("nsfw", "spoof", "embed")
# A face this many px across in the coarse detector input has landmarks precise enough for alignment.
_COARSE_MIN_FACE_PX = 48
ALL_CHECKS: frozenset[Check] = frozenset({"embed", "nsfw", "spoof", "blur"})


@dataclass
class FaceReport:
    detection: Detection  # in decoded-image coordinates
    area_fraction: float
    p_blur: float | None = None
    # aligned=true: the box is the whole image and the landmarks the template's, not detected.
    assumed: bool = False


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
    skipped_checks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Models:
    """The models one request needs (None: not needed), resolved before any work is done."""

    detector: Any = None
    embedder: Any = None
    nsfw: Any = None
    spoof: Any = None
    blur: Any = None
    # Asked for but not applicable to this kind of input (aligned=true: "spoof").
    skipped: tuple[str, ...] = ()


@dataclass
class Prepared:
    """One image after its per-image work, holding the input of each batched model that still has to run."""

    analysis: Analysis
    inputs: dict[BatchedStep, np.ndarray] = field(default_factory=dict)


class _Timer:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        _add_ms(self.timings, name, now - self.last)
        self.last = now


def _add_ms(timings: dict[str, float], name: str, seconds: float) -> None:
    # Accumulates: a model's input preparation and its run are reported together under its name.
    timings[name] = round(timings.get(name, 0.0) + seconds * 1000, 2)


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

    def resolve(self, checks: frozenset[Check], *, all_faces: bool = False, aligned: bool = False) -> Models:
        """Every model the request needs, so a missing one fails fast (503) before any work."""
        needs_face = bool(checks & {"embed", "spoof", "blur"}) or all_faces
        if "blur" in checks:
            blur = self.models.require("blur")
        else:  # /v1/detect reports per-face sharpness when it can, but does not need it
            blur = self.models.slots["blur"].model if all_faces and self.models.ready("blur") else None
        return Models(
            # aligned=true: the image is the face, no detector; no anti-spoof (it needs the face's surroundings).
            detector=self.models.require("detector") if needs_face and not aligned else None,
            embedder=self.models.require("embedder") if "embed" in checks else None,
            nsfw=self.models.require("nsfw") if "nsfw" in checks else None,
            spoof=self.models.require("spoof") if "spoof" in checks and not aligned else None,
            blur=blur,
            skipped=("spoof",) if aligned and "spoof" in checks else (),
        )

    def analyze(
        self, data: bytes, checks: frozenset[Check], *, all_faces: bool = False, aligned: bool = False
    ) -> Analysis:
        """Run in a worker thread. `all_faces` also scores sharpness for every face (for /v1/detect)."""
        models = self.resolve(checks, all_faces=all_faces, aligned=aligned)
        item = self.prepare(data, models, all_faces=all_faces, aligned=aligned)
        for step in BATCHED_STEPS:
            self.run_step(step, models, [item])
        return item.analysis

    def prepare(self, data: bytes, models: Models, *, all_faces: bool = False, aligned: bool = False) -> Prepared:
        """The per-image stage: decode, find the face, judge blur, and make every batched model's input."""
        timings: dict[str, float] = {}
        timer = _Timer(timings)
        # Blur is judged on the photo's own pixels; every other check is content with a reduced decode.
        image = self.decode(data, full_resolution=models.blur is not None)
        timer.lap("decode")

        faces: list[FaceReport] = []
        primary: FaceReport | None = None
        face_issue: str | None = None
        if aligned:
            box = np.array([0.0, 0.0, image.width, image.height])
            landmarks = crop_template_landmarks(image.width, image.height)
            primary = FaceReport(Detection(box, 1.0, landmarks), 1.0, assumed=True)
            faces = [primary]
        elif models.detector is not None:
            image_area = float(image.width * image.height)
            faces = [FaceReport(d, d.area / image_area) for d in self._detect(models.detector, image, all_faces)]
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
        analysis.skipped_checks = list(models.skipped)
        item = Prepared(analysis)
        if models.nsfw is not None:
            item.inputs["nsfw"] = models.nsfw.model_input(image)
            timer.lap("nsfw")
        judged = faces if all_faces else [primary] if primary is not None else []
        if models.blur is not None and judged:
            for report in judged:
                report.p_blur = models.blur.probability(image, report.detection)
            analysis.blur_probability = None if primary is None else primary.p_blur
            timer.lap("blur")
        if primary is not None:
            face = primary.detection
            if models.spoof is not None:
                item.inputs["spoof"] = models.spoof.model_input(image, face)
                timer.lap("spoof")
            if models.embedder is not None:
                item.inputs["embed"] = crop_to_aligned(image.rgb) if aligned else align_face(image.rgb, face.landmarks)
                timer.lap("embed")
        return item

    def run_step(self, step: BatchedStep, models: Models, items: list[Prepared]) -> None:
        """One run of the `step` model over the prepared inputs of `items` (those that have one)."""
        todo = [item for item in items if step in item.inputs]
        model = models.embedder if step == "embed" else getattr(models, step)
        if not todo or model is None:
            return
        started = time.perf_counter()
        inputs = [item.inputs.pop(step) for item in todo]
        if step == "embed":
            values: Any = model.embed_aligned(inputs)
        else:
            values = model.scores(inputs)
        elapsed = time.perf_counter() - started
        for item, value in zip(todo, values, strict=True):
            a = item.analysis
            if step == "embed":
                a.embedding = value
            elif step == "nsfw":
                a.nsfw_probability = value
            else:
                a.spoof_probability = value
            # In a batch each image reports the whole shared run: that is how long it waited for it.
            _add_ms(a.timings_ms, step, elapsed)

    # -- views -------------------------------------------------------------------------------------------

    def describe_face(self, image: DecodedImage, report: FaceReport) -> dict:
        """A face in *original* image coordinates (boxes and landmarks match the uploaded photo)."""
        det = report.detection
        inv = 1.0 / image.scale
        pose = None
        if not report.assumed:  # a pose read off template landmarks would always be frontal: say unknown
            yaw, pitch, roll = estimate_pose(det.landmarks)
            pose = {"yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)}
        return {
            "box": [round(float(v) * inv, 1) for v in det.box],
            "score": round(det.score, 4),
            "landmarks": [[round(float(x) * inv, 1), round(float(y) * inv, 1)] for x, y in det.landmarks],
            "pose": pose,
            "area_fraction": round(report.area_fraction, 5),
            "quality": round(face_quality(det.score, det.landmarks, report.p_blur, image.scale), 4),
            "sharpness": None if report.p_blur is None else round(1.0 - report.p_blur, 4),
        }
