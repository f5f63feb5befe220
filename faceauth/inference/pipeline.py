"""One pass over one photo: decode once, detect once, then only the checks a request asks for.

Every endpoint is a view of the same pass, so `/v1/analyze` (what the Face API uses) costs one decode, one
detector run and one alignment, however many checks it reports.

The work is in stages so that concurrent requests can share model runs (`faceauth.inference.batching`):
`start` decodes and makes the inputs that need no face (the coarse detector input, the input of each check that
looks at the whole photo); `finish` picks the face from the detections, judges the checks that read the
full-resolution face (blur) and makes the face-based inputs (anti-spoof context crop, aligned face); `run_step`
runs one model once over the inputs of any number of images. `run` is all of it, in order, for one image.

The pipeline knows models only as steps (a batched run and where its output goes) and checks only by what
they look at (`QualityCheck.pixels`): a new check is a class in `faceauth.inference.checks`, not a branch here.

Pixels: a request that runs the blur check decodes the photo at full resolution (blur is judged in the
photo's own pixels) and everything else is made from one area-reduced working copy; other requests decode a
large JPEG at reduced scale (DCT scaling) and use it directly. Either way the file is decoded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Literal

import numpy as np

from faceauth.config import MLSettings
from faceauth.contracts.analysis import FaceIssue
from faceauth.inference.alignment import crop_template_landmarks
from faceauth.inference.checks.base import CheckName, Pixels, QualityCheck
from faceauth.inference.imaging import DecodedImage, decode_image, fit_long_side, working_copy
from faceauth.inference.models.detector import Detection, DetectorInput
from faceauth.inference.models.protocols import FaceDetector, FaceEmbedder
from faceauth.inference.modelset import CHECK_TYPES, ModelSet

# What a request asks for: the embedding and the quality checks it reports.
Task = Literal["embed", "nsfw", "spoof", "blur"]
ALL_CHECKS: frozenset[Task] = frozenset({"embed", "nsfw", "spoof", "blur"})
# A face this many px across in the coarse detector input has landmarks precise enough for alignment.
_COARSE_MIN_FACE_PX = 48


@dataclass
class FaceReport:
    detection: Detection  # in the coordinates of `Findings.image`
    area_fraction: float
    # The "native_face" checks' probabilities for this face (blur: its sharpness).
    probabilities: dict[CheckName, float] = field(default_factory=dict)
    # aligned=true: the box is the whole image and the landmarks the template's, not detected.
    assumed: bool = False
    # faces=all: this face's embedding (the subject face's is also `Findings.embedding`).
    embedding: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One model run over the prepared inputs of any number of images; `keep` files one image's output."""

    run: Callable[[list[Any]], Sequence[Any]]
    keep: Callable[[Prepared, Any], None]
    # faces=all: files the output for one of the other faces of the photo.
    keep_face: Callable[[FaceReport, Any], None]


@dataclass(frozen=True)
class Plan:
    """What one request runs, resolved before any work is done (a missing model fails it at once)."""

    detector: FaceDetector | None = None  # None: no face wanted, or aligned=true (the image is the face)
    embedder: FaceEmbedder | None = None
    checks: tuple[QualityCheck, ...] = ()
    all_faces: bool = False  # /v1/detect: every face (full-size detection), each with its sharpness if it can
    # faces=all on /v1/analyze: every usable face (at most `max_faces`, largest first) is checked and embedded.
    every_face: bool = False
    max_faces: int = 20
    aligned: bool = False
    # Asked for but not applicable to this kind of input (aligned=true: "spoof").
    skipped: tuple[CheckName, ...] = ()

    def reading(self, pixels: Pixels) -> tuple[QualityCheck, ...]:
        return tuple(check for check in self.checks if check.pixels == pixels)

    def check(self, name: CheckName) -> QualityCheck | None:
        return next((check for check in self.checks if check.name == name), None)

    @cached_property
    def steps(self) -> dict[str, Step]:
        """The batched model runs this request hands an input to, by name (each has one micro-batcher)."""
        steps: dict[str, Step] = {}
        # The coarse pass looks for the subject face only: small faces of a group photo need the full size.
        if self.detector is not None and not self.all_faces and not self.every_face:
            steps["detect"] = Step(self.detector.detect_batch, _keep_coarse_faces, _no_face_output)
        for check in self.checks:
            if check.pixels != "native_face":  # those are judged in `finish`, on pixels freed right after
                steps[check.name] = Step(
                    check.run, partial(_keep_probability, check.name), partial(_keep_face_probability, check.name)
                )
        if self.embedder is not None:
            steps["embed"] = Step(self.embedder.embed_aligned, _keep_embedding, _keep_face_embedding)
        return steps

    @property
    def photo_steps(self) -> tuple[str, ...]:
        """The steps that need no face: they run beside the detection."""
        return tuple(check.name for check in self.reading("photo"))

    @property
    def face_steps(self) -> tuple[str, ...]:
        """The steps that run once the face is known (after `finish`)."""
        embed = ("embed",) if self.embedder is not None else ()
        return (*(check.name for check in self.reading("face")), *embed)


@dataclass
class Findings:
    """What the pipeline found in one photo; the service turns it into the answers."""

    # The pixels every face coordinate refers to (the working copy; `scale` maps them to the upload).
    image: DecodedImage
    plan: Plan
    faces: list[FaceReport] = field(default_factory=list)
    primary: FaceReport | None = None
    # Why there is no usable face (no_face, face_too_small) or why the face is not accepted (multiple_faces).
    face_issue: FaceIssue | None = None
    # Each check's probability of the bad outcome: of the photo, or of the subject face.
    probabilities: dict[CheckName, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    # faces=all: the usable faces that were checked and embedded, largest first (the first is `primary`).
    subjects: list[FaceReport] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped_checks: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """One image between stages: its findings so far and the input of each step that still has to run."""

    findings: Findings
    inputs: dict[str, Any] = field(default_factory=dict)
    # faces=all: each step's inputs for the faces after the subject face (run in the same model run).
    face_inputs: dict[str, list[tuple[FaceReport, Any]]] = field(default_factory=dict)
    # The full-resolution decode, kept until the "native_face" checks have read the face from it.
    native: DecodedImage | None = None
    coarse_input: DetectorInput | None = None
    coarse_faces: list[Detection] | None = None

    @property
    def plan(self) -> Plan:
        return self.findings.plan


def _keep_coarse_faces(item: Prepared, faces: list[Detection]) -> None:
    item.coarse_faces = faces


def _keep_probability(name: CheckName, item: Prepared, probability: float) -> None:
    item.findings.probabilities[name] = probability
    if item.findings.primary is not None:
        item.findings.primary.probabilities[name] = probability


def _keep_embedding(item: Prepared, vector: np.ndarray) -> None:
    item.findings.embedding = vector
    if item.findings.primary is not None:
        item.findings.primary.embedding = vector


def _keep_face_probability(name: CheckName, report: FaceReport, probability: float) -> None:
    report.probabilities[name] = probability


def _keep_face_embedding(report: FaceReport, vector: np.ndarray) -> None:
    report.embedding = vector


def _no_face_output(report: FaceReport, output: Any) -> None:
    raise AssertionError("the detector runs once per photo, not per face")


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

    def resolve(
        self,
        tasks: frozenset[Task],
        *,
        all_faces: bool = False,
        aligned: bool = False,
        off: frozenset[CheckName] = frozenset(),
        every_face: bool = False,
    ) -> Plan:
        """Every model the request needs, so a missing one fails fast (503) before any work. The first missing
        one is the one named: the full-resolution checks (blur), the detector, the embedder, the other checks.

        aligned=true: the image is the face, so there is no detector, and a check that reads the face's
        surroundings (anti-spoof) is skipped.

        A check turned off, for the deployment (its slot is "off", e.g. ML_SERVICE_NSFW_ENABLED=false) or for
        this request (`off`: the hook for a tenant's policy), is skipped and named in `skipped_checks`, unless
        it is the only thing asked for (its own endpoint then answers 503 naming it)."""
        models = self.models
        checks: dict[CheckName, QualityCheck] = {}
        skipped: list[CheckName] = []
        for name, kind in CHECK_TYPES.items():
            if kind.pixels != "native_face":
                continue
            if name in tasks:
                checks[name] = models.require(name)
            elif all_faces and models.ready(name):  # /v1/detect reports each face's sharpness when it can
                checks[name] = models.slots[name].model
        needs_face = all_faces or any(task == "embed" or CHECK_TYPES[task].pixels != "photo" for task in tasks)
        detector = models.require("detector") if needs_face and not aligned else None
        embedder = models.require("embedder") if "embed" in tasks else None
        for name, kind in CHECK_TYPES.items():
            if kind.pixels == "native_face" or name not in tasks:
                continue
            turned_off = (name in off or models.slots[name].state == "off") and tasks != {name}
            if turned_off or (aligned and kind.needs_surroundings):
                skipped.append(name)
            else:
                checks[name] = models.require(name)
        return Plan(
            detector=detector,
            embedder=embedder,
            checks=tuple(checks[name] for name in CHECK_TYPES if name in checks),
            all_faces=all_faces,
            every_face=every_face,
            max_faces=self.settings.max_faces,
            aligned=aligned,
            skipped=tuple(skipped),
        )

    def analyze(
        self,
        data: bytes,
        tasks: frozenset[Task],
        *,
        all_faces: bool = False,
        aligned: bool = False,
        every_face: bool = False,
    ) -> Findings:
        """Every stage for one image, in a worker thread. `all_faces` also judges every face's sharpness."""
        return self.run(data, self.resolve(tasks, all_faces=all_faces, aligned=aligned, every_face=every_face))

    def run(self, data: bytes, plan: Plan) -> Findings:
        item = self.start(data, plan)
        self.run_step("detect", [item])
        self.finish(item)
        for step in (*plan.photo_steps, *plan.face_steps):
            self.run_step(step, [item])
        return item.findings

    def start(self, data: bytes, plan: Plan) -> Prepared:
        """Decode, and make the inputs that need no face: the coarse detector input and the photo checks'."""
        timings: dict[str, float] = {}
        timer = _Timer(timings)
        needs_native = bool(plan.reading("native_face"))
        decoded = self.decode(data, full_resolution=needs_native)
        work = working_copy(decoded, self.settings.decode_target_side or None)
        timer.lap("decode")
        findings = Findings(image=work, plan=plan, timings_ms=timings, skipped_checks=list(plan.skipped))
        item = Prepared(findings, native=decoded if needs_native else None)
        coarse = self.settings.face_detection_coarse_size
        wants_coarse = "detect" in plan.steps and coarse and coarse < min(self.settings.detection_size)
        photo_checks = plan.reading("photo")
        # The coarse detector input and a photo check's input are the same resize (long side to 320): do it
        # once (a smaller coarse size would leave the check fewer pixels than it takes).
        share = wants_coarse and photo_checks and all(coarse >= check.photo_side for check in photo_checks)
        fitted = fit_long_side(work, coarse) if share else None
        for check in photo_checks:
            item.inputs[check.name] = check.model_input(fitted or work, None)
            timer.lap(check.name)
        if wants_coarse:
            # Square inputs batch without padding, so batching never changes a photo's detections.
            if fitted is None:
                item.coarse_input = plan.detector.model_input(work.rgb, (coarse, coarse), full_size=True)
            else:  # made from the fitted copy, but mapping detections back to the working copy
                made = plan.detector.model_input(fitted.rgb, (coarse, coarse), full_size=True)
                item.coarse_input = replace(made, scale=fitted.width / work.width, width=work.width, height=work.height)
            item.inputs["detect"] = item.coarse_input
            timer.lap("detect")
        return item

    def _faces(self, item: Prepared) -> list[Detection]:
        """Faces, largest first. For the subject face the coarse pass usually suffices (selfies have big faces);
        it is kept only when its largest face is well inside what the coarse size resolves."""
        image = item.findings.image
        faces = item.coarse_faces
        if faces and item.coarse_input is not None:
            face = faces[0]
            side_px = min(face.width, face.height) * item.coarse_input.scale
            area_fraction = face.area / float(image.width * image.height)
            if side_px >= _COARSE_MIN_FACE_PX and area_fraction >= self.settings.face_area_threshold:
                return faces
        return item.plan.detector.detect(image.rgb)

    def finish(self, item: Prepared) -> None:
        """After the coarse detection: pick the face, judge the full-resolution face checks, and make the
        face-based model inputs."""
        f, plan = item.findings, item.plan
        timer = _Timer(f.timings_ms)
        image = f.image
        if plan.aligned:
            box = np.array([0.0, 0.0, image.width, image.height])
            landmarks = crop_template_landmarks(image.width, image.height)
            f.primary = FaceReport(Detection(box, 1.0, landmarks), 1.0, assumed=True)
            f.faces = [f.primary]
            f.subjects = [f.primary] if plan.every_face else []  # an aligned crop is one face
        elif plan.detector is not None:
            image_area = float(image.width * image.height)
            f.faces = [FaceReport(d, d.area / image_area) for d in self._faces(item)]
            timer.lap("detect")
            usable = [face for face in f.faces if face.area_fraction >= self.settings.face_area_threshold]
            if not f.faces:
                f.face_issue = "no_face"
            elif not usable:
                f.face_issue = "face_too_small"
            else:
                f.primary = usable[0]  # faces are sorted largest first
                if plan.every_face:  # every face is answered for: several are not a fault
                    f.subjects = usable[: plan.max_faces]
                elif len(usable) > 1 and self.settings.multiple_faces_policy == "reject":
                    f.face_issue = "multiple_faces"
        judged = f.faces if plan.all_faces else f.subjects or ([f.primary] if f.primary is not None else [])
        if judged:
            native = item.native or image
            to_native = native.width / image.width
            for check in plan.reading("native_face"):
                for report in judged:
                    face = report.detection if native is image else report.detection.scaled(to_native)
                    # One face at a time, as it always was: a batched run may differ in the last bits.
                    report.probabilities[check.name] = check.run([check.model_input(native, face)])[0]
                if f.primary is not None:
                    f.probabilities[check.name] = f.primary.probabilities[check.name]
                timer.lap(check.name)
        item.native = None  # the full-resolution pixels are not needed any more: free them early
        if f.primary is not None:
            face = f.primary.detection
            others = f.subjects[1:]
            for check in plan.reading("face"):
                item.inputs[check.name] = check.model_input(image, face)
                if others:
                    item.face_inputs[check.name] = [(r, check.model_input(image, r.detection)) for r in others]
                timer.lap(check.name)
            if plan.embedder is not None:
                embedder = plan.embedder
                aligned_face = embedder.from_crop(image.rgb) if plan.aligned else embedder.align(image.rgb, face)
                item.inputs["embed"] = aligned_face
                if others:
                    item.face_inputs["embed"] = [(r, embedder.align(image.rgb, r.detection)) for r in others]
                timer.lap("embed")

    def run_step(self, step: str, items: list[Prepared]) -> list[None]:
        """One run of the `step` model over the prepared inputs of `items` (those that have one). The results
        go into the items; the list of Nones is one output per item, as a micro-batcher expects."""
        todo = [item for item in items if step in item.inputs]
        if not todo:
            return [None] * len(items)
        runner = todo[0].plan.steps[step]  # every request's plan holds the same loaded models
        # One run over every face of every image: the subject faces, then (faces=all) each image's other faces.
        batch: list[Any] = []
        owners: list[tuple[Prepared, FaceReport | None]] = []
        for item in todo:
            batch.append(item.inputs.pop(step))
            owners.append((item, None))
            for report, face_input in item.face_inputs.pop(step, ()):
                batch.append(face_input)
                owners.append((item, report))
        started = time.perf_counter()
        outputs = runner.run(batch)
        elapsed = time.perf_counter() - started
        for (item, report), output in zip(owners, outputs, strict=True):
            if report is None:
                runner.keep(item, output)
            else:
                runner.keep_face(report, output)
        for item in todo:
            # In a batch each image reports the whole shared run: that is how long it waited for it.
            _add_ms(item.findings.timings_ms, step, elapsed)
        return [None] * len(items)
