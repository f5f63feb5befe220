"""One pass over one photo: decode once, detect once, then only the checks a request asks for.

Every endpoint is a view of the same `analyze` call, so `/v1/analyze` (what the Face API uses) costs one
decode, one detector run and one alignment, however many checks it reports.

The work is in stages so that concurrent requests can share model runs (`faceauth.inference.batching`):
`start` decodes and makes the inputs that need no face (the coarse detector input, the NSFW letterbox);
`finish` picks the face from the detections and makes the face-based inputs (anti-spoof context crop,
aligned face) and judges blur; `run_step` runs one model (detect, nsfw, spoof, embed) once over the inputs of
any number of images. `analyze` is all of it, in order, for one image.

Pixels: a request that runs the blur check decodes the photo at full resolution (blur is judged in the
photo's own pixels) and everything else is made from one area-reduced working copy; other requests decode a
large JPEG at reduced scale (DCT scaling) and use it directly. Either way the file is decoded once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from faceauth.config import MLSettings
from faceauth.inference.imaging import DecodedImage, decode_image, fit_long_side, working_copy
from faceauth.inference.models.detector import Detection, DetectorInput
from faceauth.inference.models.embedder import align_face, crop_template_landmarks, crop_to_aligned
from faceauth.inference.models.geometry import estimate_pose, face_quality
from faceauth.inference.models.loader import ModelSet
from faceauth.inference.models.nsfw import INPUT_SIZE as NSFW_INPUT_SIZE

Check = Literal["embed", "nsfw", "spoof", "blur"]
# The models that run once over many images' inputs; the rest (decode, blur, alignment) is per-image work.
BatchedStep = Literal["detect", "nsfw", "spoof", "embed"]
# Steps that run after `finish` (they need the face); "nsfw" only needs `start`, "detect" comes before `finish`.
FACE_STEPS: tuple[BatchedStep, ...] = ("spoof", "embed")
# A face this many px across in the coarse detector input has landmarks precise enough for alignment.
_COARSE_MIN_FACE_PX = 48
ALL_CHECKS: frozenset[Check] = frozenset({"embed", "nsfw", "spoof", "blur"})


@dataclass
class FaceReport:
    detection: Detection  # in the coordinates of `Analysis.image`
    area_fraction: float
    p_blur: float | None = None
    # aligned=true: the box is the whole image and the landmarks the template's, not detected.
    assumed: bool = False


@dataclass
class Analysis:
    # The pixels every face coordinate refers to (the working copy; `scale` maps them to the upload).
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
    """One image between stages: its analysis so far and the input of each model that still has to run."""

    analysis: Analysis
    models: Models
    all_faces: bool = False
    aligned: bool = False
    inputs: dict[BatchedStep, Any] = field(default_factory=dict)
    # The full-resolution decode, kept until the blur check has read the face from it.
    native: DecodedImage | None = None
    coarse_input: DetectorInput | None = None
    coarse_faces: list[Detection] | None = None


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
        """Every stage for one image, in a worker thread. `all_faces` also scores sharpness for every face."""
        models = self.resolve(checks, all_faces=all_faces, aligned=aligned)
        item = self.start(data, models, all_faces=all_faces, aligned=aligned)
        self.run_step("detect", [item])
        self.finish(item)
        for step in ("nsfw", *FACE_STEPS):
            self.run_step(step, [item])
        return item.analysis

    def start(self, data: bytes, models: Models, *, all_faces: bool = False, aligned: bool = False) -> Prepared:
        """Decode, and make the inputs that need no face: the coarse detector input and the NSFW letterbox."""
        timings: dict[str, float] = {}
        timer = _Timer(timings)
        needs_native = models.blur is not None
        decoded = self.decode(data, full_resolution=needs_native)
        work = working_copy(decoded, self.settings.decode_target_side or None)
        timer.lap("decode")
        analysis = Analysis(image=work, faces=[], primary=None, face_issue=None, timings_ms=timings)
        analysis.skipped_checks = list(models.skipped)
        item = Prepared(analysis, models, all_faces=all_faces, aligned=aligned)
        item.native = decoded if needs_native else None
        coarse = self.settings.face_detection_coarse_size
        wants_coarse = (
            models.detector is not None and not all_faces and coarse and coarse < min(self.settings.detection_size)
        )
        # The coarse detector input and the NSFW letterbox are the same resize (long side to 320): do it once
        # (a smaller coarse size would leave NSFW fewer pixels than it takes).
        share = wants_coarse and models.nsfw is not None and coarse >= NSFW_INPUT_SIZE
        fitted = fit_long_side(work, coarse) if share else None
        if models.nsfw is not None:
            item.inputs["nsfw"] = models.nsfw.model_input(fitted or work)
            timer.lap("nsfw")
        if wants_coarse:
            # Square inputs batch without padding, so batching never changes a photo's detections.
            if fitted is None:
                item.coarse_input = models.detector.model_input(work.rgb, (coarse, coarse), full_size=True)
            else:  # made from the fitted copy, but mapping detections back to the working copy
                made = models.detector.model_input(fitted.rgb, (coarse, coarse), full_size=True)
                item.coarse_input = replace(made, scale=fitted.width / work.width, width=work.width, height=work.height)
            item.inputs["detect"] = item.coarse_input
            timer.lap("detect")
        return item

    def _faces(self, item: Prepared) -> list[Detection]:
        """Faces, largest first. For the subject face the coarse pass usually suffices (selfies have big faces);
        it is kept only when its largest face is well inside what the coarse size resolves."""
        image = item.analysis.image
        faces = item.coarse_faces
        if faces and item.coarse_input is not None:
            face = faces[0]
            side_px = min(face.width, face.height) * item.coarse_input.scale
            area_fraction = face.area / float(image.width * image.height)
            if side_px >= _COARSE_MIN_FACE_PX and area_fraction >= self.settings.face_area_threshold:
                return faces
        return item.models.detector.detect(image.rgb)

    def finish(self, item: Prepared) -> None:
        """After the coarse detection: pick the face, judge blur, and make the face-based model inputs."""
        a, models = item.analysis, item.models
        timer = _Timer(a.timings_ms)
        image = a.image
        if item.aligned:
            box = np.array([0.0, 0.0, image.width, image.height])
            landmarks = crop_template_landmarks(image.width, image.height)
            a.primary = FaceReport(Detection(box, 1.0, landmarks), 1.0, assumed=True)
            a.faces = [a.primary]
        elif models.detector is not None:
            image_area = float(image.width * image.height)
            a.faces = [FaceReport(d, d.area / image_area) for d in self._faces(item)]
            timer.lap("detect")
            usable = [f for f in a.faces if f.area_fraction >= self.settings.face_area_threshold]
            if not a.faces:
                a.face_issue = "no_face"
            elif not usable:
                a.face_issue = "face_too_small"
            else:
                a.primary = usable[0]  # faces are sorted largest first
                if len(usable) > 1 and self.settings.multiple_faces_policy == "reject":
                    a.face_issue = "multiple_faces"
        judged = a.faces if item.all_faces else [a.primary] if a.primary is not None else []
        if models.blur is not None and judged:
            native = item.native or image
            to_native = native.width / image.width
            for report in judged:
                face = report.detection if native is image else report.detection.scaled(to_native)
                report.p_blur = models.blur.probability(native, face)
            a.blur_probability = None if a.primary is None else a.primary.p_blur
            timer.lap("blur")
        item.native = None  # the full-resolution pixels are not needed any more: free them early
        if a.primary is not None:
            face = a.primary.detection
            if models.spoof is not None:
                item.inputs["spoof"] = models.spoof.model_input(image, face)
                timer.lap("spoof")
            if models.embedder is not None:
                aligned_face = crop_to_aligned(image.rgb) if item.aligned else align_face(image.rgb, face.landmarks)
                item.inputs["embed"] = aligned_face
                timer.lap("embed")

    def run_step(self, step: BatchedStep, items: list[Prepared]) -> list[None]:
        """One run of the `step` model over the prepared inputs of `items` (those that have one). The results
        go into the items; the list of Nones is one output per item, as a micro-batcher expects."""
        todo = [item for item in items if step in item.inputs]
        if not todo:
            return [None] * len(items)
        models = todo[0].models
        model = {"detect": models.detector, "embed": models.embedder, "nsfw": models.nsfw, "spoof": models.spoof}[step]
        started = time.perf_counter()
        inputs = [item.inputs.pop(step) for item in todo]
        if step == "embed":
            values: Any = model.embed_aligned(inputs)
        elif step == "detect":
            values = model.detect_batch(inputs)
        else:
            values = model.scores(inputs)
        elapsed = time.perf_counter() - started
        for item, value in zip(todo, values, strict=True):
            a = item.analysis
            if step == "embed":
                a.embedding = value
            elif step == "detect":
                item.coarse_faces = value
            elif step == "nsfw":
                a.nsfw_probability = value
            else:
                a.spoof_probability = value
            # In a batch each image reports the whole shared run: that is how long it waited for it.
            _add_ms(a.timings_ms, step, elapsed)
        return [None] * len(items)

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
