"""Loads every model once at start-up into named slots, remembering what failed and why.

A model that fails to load does not take the service down: its endpoints answer 503 with a code naming
it, `/healthz` stays ok, and `/readyz` shows each slot's state, path, id and load time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from faceauth.config import MLSettings
from faceauth.inference.imaging import DecodedImage
from faceauth.inference.models import registry
from faceauth.inference.models.detector import Detection, ScrfdDetector
from faceauth.inference.models.embedder import ArcFaceEmbedder, align_face
from faceauth.inference.models.nsfw import NudeNetNsfw, letterbox
from faceauth.inference.models.spoof import MiniFASNetSpoof, context_crop
from faceauth.inference.runtime import create_session, run_in_batches, softmax
from faceauth.kit.errors import AppError

log = logging.getLogger(__name__)

SlotName = Literal["detector", "embedder", "nsfw", "spoof", "blur"]
SLOT_NAMES: tuple[SlotName, ...] = ("detector", "embedder", "nsfw", "spoof", "blur")


@dataclass
class ModelSlot:
    name: SlotName
    state: Literal["ready", "failed", "missing"] = "missing"
    path: str | None = None
    model_id: str | None = None
    load_seconds: float | None = None
    error: str | None = None
    model: Any = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": self.path,
            "model_id": self.model_id,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            "error": self.error,
        }


class NsfwCheck:
    """Whole-image NSFW probability.

    Like SpoofCheck: `model_input` is the per-image preprocessing, `scores` one model run over any number of
    inputs, so a batch of photos shares a single run.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def model_input(self, image: DecodedImage, face: Detection | None = None) -> np.ndarray:
        return letterbox(image.rgb)

    def scores(self, inputs: list[np.ndarray]) -> list[float]:
        return [float(p) for p in self.model.probabilities(inputs)]

    def probability(self, image: DecodedImage, face: Detection | None = None) -> float:
        return self.scores([self.model_input(image)])[0]


class SpoofCheck:
    def __init__(self, model: Any) -> None:
        self.model = model

    def model_input(self, image: DecodedImage, face: Detection) -> np.ndarray:
        return context_crop(image.rgb, face.box)

    def scores(self, inputs: list[np.ndarray]) -> list[float]:
        return [float(p) for p in self.model.spoof_probability(inputs)]

    def probability(self, image: DecodedImage, face: Detection) -> float:
        return self.scores([self.model_input(image, face)])[0]


class BlurCheck:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.model_id = getattr(model, "model_id", None)

    def probability(self, image: DecodedImage, face: Detection) -> float:
        return float(self.model.blur_probability(image.rgb, face.landmarks, face.box, image.scale))


class TorchvisionClassifierCheck:
    """A reference-system classifier (torchvision MobileNet/ResNet, `.pth` via torch or converted ONNX).

    Input per check: NSFW sees the whole photo, spoof the 2.7x context crop, blur the aligned face.
    Class `positive_index` (default 1) is the bad class: nsfw / spoof / blurry.
    """

    def __init__(
        self,
        kind: SlotName,
        path: Path,
        *,
        session: ort.InferenceSession | None = None,
        device: str = "cpu",
        positive_index: int = 1,
    ) -> None:
        """A `.pth` runs on torch; a converted ONNX file comes as its already-open `session`."""
        from faceauth.inference.models import torch_compat

        self.kind = kind
        self.positive_index = positive_index
        self._preprocess = torch_compat.preprocess_imagenet
        if session is None:
            clf = torch_compat.TorchClassifier(path, device=device)
            if positive_index >= clf.num_classes:
                raise ValueError(
                    f"{path.name} has {clf.num_classes} classes; positive class {positive_index} does not exist"
                )
            self._predict = clf.predict_proba
            self.input_size = 224
        else:
            meta = session.get_modelmeta().custom_metadata_map
            self.input_size = int(meta.get("faceauth.input_size", 224))
            classes = int(meta.get("faceauth.num_classes", 0))
            if classes and positive_index >= classes:
                raise ValueError(f"{path.name} has {classes} classes; positive class {positive_index} does not exist")

            def _predict(batch: np.ndarray) -> np.ndarray:
                return softmax(run_in_batches(session, batch)[0])

            self._predict = _predict

    def model_input(self, image: DecodedImage, face: Detection | None = None) -> np.ndarray:
        if self.kind == "nsfw" or face is None:
            return image.rgb
        if self.kind == "spoof":
            return context_crop(image.rgb, face.box)[:, :, ::-1].copy()
        return align_face(image.rgb, face.landmarks, size=224)

    def scores(self, inputs: list[np.ndarray]) -> list[float]:
        probs = self._predict(self._preprocess(inputs, self.input_size))
        return [float(p) for p in probs[:, self.positive_index]]

    def probability(self, image: DecodedImage, face: Detection | None = None) -> float:
        return self.scores([self.model_input(image, face)])[0]


class ModelSet:
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

    def _load(self, name: SlotName, path: Path | None, build, model_id: str | None = None) -> None:
        slot = self.slots[name]
        slot.path = str(path) if path else None
        started = time.perf_counter()
        try:
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
            slot.model = build()
            slot.model_id = (
                model_id
                or getattr(slot.model, "model_id", None)
                or (f"{path.stem}@{registry.file_sha256(path)[:12]}" if path else name)
            )
            slot.state = "ready"
        except Exception as exc:
            slot.state = "missing" if isinstance(exc, FileNotFoundError) else "failed"
            slot.error = f"{type(exc).__name__}: {exc}"
            log.error("model %s not loaded: %s", name, slot.error)
        slot.load_seconds = time.perf_counter() - started

    @classmethod
    def load(cls, settings: MLSettings) -> ModelSet:
        models = cls()
        device, threads = settings.ml_device, settings.intra_op_threads

        pack: registry.FacePack | None = None
        try:
            pack = registry.resolve_face_pack(settings.face_model, settings.model_dir)
        except Exception as exc:
            for name in ("detector", "embedder"):
                models.slots[name].state = "missing"
                models.slots[name].error = str(exc)
        if pack is not None:
            detector_path = precision_path(pack.detector, settings.detector_precision, settings.model_dir)
            models._load(
                "detector",
                detector_path,
                lambda: ScrfdDetector(
                    detector_path,
                    input_size=settings.detection_size,
                    score_threshold=settings.face_detection_threshold,
                    device=device,
                    intra_op_threads=threads,
                ),
            )
            embedder_path = precision_path(pack.embedder, settings.embedder_precision, settings.model_dir)
            models._load(
                "embedder",
                embedder_path,
                lambda: ArcFaceEmbedder(
                    embedder_path,
                    model_id=embedder_model_id(pack, embedder_path),
                    device=device,
                    intra_op_threads=threads,
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
            embedder = models.slots["embedder"].model
            if embedder is not None:
                models.embedding_dim = embedder.dim
                if embedder.dim != settings.face_embedding_dim:
                    slot = models.slots["embedder"]
                    slot.state, slot.model = "failed", None
                    slot.error = (
                        f"{pack.embedder.name} makes {embedder.dim}-d vectors but "
                        f"ML_SERVICE_FACE_EMBEDDING_DIM={settings.face_embedding_dim}"
                    )

        nsfw_path = settings.nsfw_local_model_path or registry.nudenet_model_path()
        models._load("nsfw", nsfw_path, lambda: _quality_check("nsfw", nsfw_path, settings))

        spoof_path = settings.spoof_local_model_path or registry.default_spoof_path(settings.model_dir)
        models._load("spoof", spoof_path, lambda: _quality_check("spoof", spoof_path, settings))

        blur_path = settings.blur_local_model_path
        models._load("blur", blur_path, lambda: _quality_check("blur", blur_path, settings))
        return models


def int8_model_path(model_dir: Path, source: Path) -> Path:
    """Where `faceauth models quantize` puts the int8 copy of `source`. Named by the source's content, so a
    changed source model never pairs with a stale int8 copy; outside the pack folder, so probing a pack
    directory never mistakes the copy for a second model."""
    return model_dir / "int8" / f"{source.stem}-{registry.file_sha256(source)[:12]}.int8.onnx"


def precision_path(source: Path, precision: str, model_dir: Path) -> Path:
    return int8_model_path(model_dir, source) if precision == "int8" else source


def embedder_model_id(pack: registry.FacePack, path: Path) -> str:
    """The fp32 pack's id, or for the int8 copy one naming it: int8 vectors differ from fp32 ones by about a
    hundredth of cosine, so the two must never be compared (a changed id makes `faceauth reembed` run)."""
    if path == pack.embedder:
        return pack.embedder_id
    return f"{pack.name}/{pack.embedder.stem}-int8@{registry.file_sha256(path)[:12]}"


def _quality_check(kind: SlotName, path: Path | None, settings: MLSettings):
    """The check for one quality slot. ONNX files are opened once and routed by what they are."""
    positive = getattr(settings, f"{kind}_positive_class")
    if path is None:  # only blur has no file: the built-in sharpness classifier
        from faceauth.inference.models.blur import SharpnessClassifier

        return BlurCheck(SharpnessClassifier())
    if path.suffix in (".pth", ".pt"):
        return TorchvisionClassifierCheck(kind, path, device=settings.ml_device, positive_index=positive)
    session = create_session(path, device=settings.ml_device, intra_op_threads=settings.intra_op_threads)
    if session.get_modelmeta().custom_metadata_map.get("faceauth.kind") == "torchvision-classifier":
        return TorchvisionClassifierCheck(kind, path, session=session, positive_index=positive)
    if kind == "nsfw":
        return NsfwCheck(NudeNetNsfw(session, name=path.name))
    if kind == "spoof":
        return SpoofCheck(MiniFASNetSpoof(session, name=path.name))
    raise ValueError(f"{path.name}: a blur model must be a torchvision classifier (.pth or `faceauth models convert`)")
