"""Loads every model once at start-up into named slots, remembering what failed and why, and builds the checks.

A model that fails to load does not take the service down: its endpoints answer 503 with a code naming
it, `/healthz` stays ok, and `/readyz` shows each slot's state, path, id and load time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceauth.config import MLSettings
from faceauth.inference.artefacts import registry
from faceauth.inference.checks.base import CheckName, QualityCheck
from faceauth.inference.checks.blur import BlurCheck
from faceauth.inference.checks.nsfw import NsfwCheck
from faceauth.inference.checks.reference import ReferenceClassifierCheck
from faceauth.inference.checks.spoof import SpoofCheck
from faceauth.inference.models.detector import ScrfdDetector
from faceauth.inference.models.embedder import ArcFaceEmbedder
from faceauth.inference.models.minifasnet import MiniFASNetSpoof
from faceauth.inference.models.nudenet import NudeNetNsfw
from faceauth.inference.models.sharpness import SharpnessClassifier
from faceauth.inference.models.torchvision import ConvertedClassifier, TorchClassifier, is_converted
from faceauth.inference.runtime import create_session
from faceauth.kit.errors import AppError

log = logging.getLogger(__name__)

SlotName = Literal["detector", "embedder", "nsfw", "spoof", "blur"]
SLOT_NAMES: tuple[SlotName, ...] = ("detector", "embedder", "nsfw", "spoof", "blur")
CHECK_TYPES: dict[CheckName, type[QualityCheck]] = {"nsfw": NsfwCheck, "spoof": SpoofCheck, "blur": BlurCheck}
# The network of a check whose slot holds an ONNX file of the check's own kind (blur's is built in).
_ONNX_NETWORKS = {"nsfw": NudeNetNsfw, "spoof": MiniFASNetSpoof}


@dataclass
class ModelSlot:
    name: SlotName
    # "off": turned off for this deployment (ML_SERVICE_NSFW_ENABLED=false, or the permissive profile).
    state: Literal["ready", "failed", "missing", "off"] = "missing"
    path: str | None = None
    model_id: str | None = None
    load_seconds: float | None = None
    error: str | None = None
    # What the weights' licence allows (each model class says; docs/MODELS.md explains them).
    license: str | None = None
    model: Any = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": self.path,
            "model_id": self.model_id,
            "license": self.license,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            "error": self.error,
        }


class ModelSet:
    """The five slots: the detector, the embedder and one quality check each."""

    def __init__(self) -> None:
        self.slots: dict[SlotName, ModelSlot] = {name: ModelSlot(name) for name in SLOT_NAMES}
        self.embedding_dim: int | None = None

    def require(self, name: SlotName) -> Any:
        slot = self.slots[name]
        if slot.state != "ready":
            raise AppError(
                503,
                f"{name}_model_unavailable",
                f"the {name} model is not loaded ({slot.error or slot.state})",
                details={"model": name, "state": slot.state},
            )
        return slot.model

    def ready(self, *names: SlotName) -> bool:
        return all(self.slots[n].state == "ready" for n in names)

    def _load(self, name: SlotName, path: Path | None, build: Callable[[], Any]) -> None:
        slot = self.slots[name]
        slot.path = str(path) if path else None
        started = time.perf_counter()
        try:
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
            slot.model = build()
            slot.model_id = getattr(slot.model, "model_id", None) or (
                f"{path.stem}@{registry.file_sha256(path)[:12]}" if path else name
            )
            slot.license = _license_of(slot.model)
            slot.state = "ready"
        except Exception as exc:
            slot.state = "missing" if isinstance(exc, FileNotFoundError) else "failed"
            slot.error = f"{type(exc).__name__}: {exc}"
            log.error("model %s not loaded: %s", name, slot.error)
        slot.load_seconds = time.perf_counter() - started

    def _check_dim(self, settings: MLSettings) -> None:
        embedder = self.slots["embedder"].model
        if embedder is None:
            return
        self.embedding_dim = embedder.dim
        wanted = settings.face_embedding_dim
        if wanted is not None and embedder.dim != wanted:
            slot = self.slots["embedder"]
            slot.state, slot.model = "failed", None
            slot.error = f"{slot.model_id} makes {embedder.dim}-d vectors but ML_SERVICE_FACE_EMBEDDING_DIM={wanted}"

    def _load_permissive_face_models(self, settings: MLSettings) -> None:
        """dlib's HOG detector with its 5-point predictor and its ResNet descriptor (models/dlib_face.py)."""
        from faceauth.inference.models import dlib_face

        try:
            weights = dlib_face.weights_dir()
        except FileNotFoundError as exc:
            for name in ("detector", "embedder"):
                self.slots[name].error = str(exc)
            return
        predictor = weights / dlib_face.PREDICTOR_FILE
        self._load(
            "detector",
            predictor,
            lambda: dlib_face.DlibHogDetector(predictor, input_size=settings.detection_size),
        )
        descriptor = weights / dlib_face.DESCRIPTOR_FILE
        self._load(
            "embedder",
            descriptor,
            lambda: dlib_face.DlibResnetEmbedder(
                descriptor, model_id=f"dlib/{descriptor.stem}@{registry.file_sha256(descriptor)[:12]}"
            ),
        )
        self._check_dim(settings)

    @classmethod
    def load(cls, settings: MLSettings) -> ModelSet:
        models = cls()
        if settings.model_profile == "permissive":
            models._load_permissive_face_models(settings)
        else:
            models._load_face_pack(settings)

        if settings.nsfw_on:
            nsfw_path = settings.nsfw_local_model_path or registry.nudenet_model_path()
            models._load("nsfw", nsfw_path, lambda: _check("nsfw", nsfw_path, settings))
        else:
            slot = models.slots["nsfw"]
            slot.state, slot.error = "off", "turned off (ML_SERVICE_NSFW_ENABLED, or the permissive profile)"

        spoof_path = settings.spoof_local_model_path or registry.default_spoof_path(settings.model_dir)
        models._load("spoof", spoof_path, lambda: _check("spoof", spoof_path, settings))

        blur_path = settings.blur_local_model_path
        models._load("blur", blur_path, lambda: _check("blur", blur_path, settings))
        return models

    def _load_face_pack(self, settings: MLSettings) -> None:
        """The SCRFD detector and ArcFace embedder of the face pack ML_SERVICE_FACE_MODEL names."""
        models = self
        device, threads = settings.ml_device, settings.intra_op_threads
        pack: registry.FacePack | None = None
        try:
            pack = registry.resolve_face_pack(settings.face_model, settings.model_dir)
        except Exception as exc:
            for name in ("detector", "embedder"):
                models.slots[name].state = "missing"
                models.slots[name].error = str(exc)
        if pack is not None:
            detector_path = registry.precision_path(pack.detector, settings.detector_precision, settings.model_dir)
            models._load(
                "detector",
                detector_path,
                lambda: ScrfdDetector(
                    create_session(detector_path, device=device, intra_op_threads=threads),
                    name=detector_path.name,
                    input_size=settings.detection_size,
                    score_threshold=settings.face_detection_threshold,
                ),
            )
            embedder_path = registry.precision_path(pack.embedder, settings.embedder_precision, settings.model_dir)
            models._load(
                "embedder",
                embedder_path,
                lambda: ArcFaceEmbedder(
                    create_session(embedder_path, device=device, intra_op_threads=threads),
                    name=embedder_path.name,
                    model_id=registry.embedder_model_id(pack, embedder_path),
                    license=registry.pack_embedder_license(pack.name),
                ),
            )
            for name, precision in (
                ("detector", settings.detector_precision),
                ("embedder", settings.embedder_precision),
            ):
                slot = models.slots[name]
                if precision == "int8" and slot.state == "missing":
                    slot.error = (
                        f"{slot.error}: run `faceauth models quantize --calibration-dir <photos>` "
                        f"or set ML_SERVICE_{name.upper()}_PRECISION=fp32"
                    )
            models._check_dim(settings)


def _license_of(model: Any) -> str | None:
    """A model's licence, or a check's model's."""
    return getattr(model, "license", None) or getattr(getattr(model, "model", None), "license", None)


def _check(kind: CheckName, path: Path | None, settings: MLSettings) -> QualityCheck:
    """The check of one quality slot: with its own model, or a reference classifier in its place. ONNX files are
    opened once and routed by what they are."""
    serves = CHECK_TYPES[kind]
    threshold: float = getattr(settings, f"{kind}_threshold")
    positive: int = getattr(settings, f"{kind}_positive_class")
    if path is None:  # only blur has no file: the built-in sharpness classifier
        return BlurCheck(SharpnessClassifier(), threshold)
    if path.suffix in (".pth", ".pt"):
        classifier = TorchClassifier(path, device=settings.ml_device)
        return ReferenceClassifierCheck(serves, classifier, threshold=threshold, positive_index=positive)
    session = create_session(path, device=settings.ml_device, intra_op_threads=settings.intra_op_threads)
    if is_converted(session):
        converted = ConvertedClassifier(session, name=path.name)
        return ReferenceClassifierCheck(serves, converted, threshold=threshold, positive_index=positive)
    if kind not in _ONNX_NETWORKS:
        raise ValueError(
            f"{path.name}: a blur model must be a torchvision classifier (.pth or `faceauth models convert`)"
        )
    return serves(_ONNX_NETWORKS[kind](session, name=path.name), threshold)
