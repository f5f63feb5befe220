"""dlib's face models, for the `permissive` profile: the HOG face detector with the 5-point shape predictor, and the
ResNet face descriptor (128-d). The weights are CC0 (public domain) files of the `face-recognition-models` wheel;
the HOG detector is part of the dlib library (Boost licence). They run in dlib itself (`dlib-bin`): dlib's networks
have no ONNX export, and a converter written here would be a second implementation of dlib's layers to keep
faithful (docs/MODELS.md).

The shape predictor's 5 points are two corners of each eye and the base of the nose. The rest of the service
(blur window, pose, the Face answer) reads ArcFace's 5 landmarks (eye centres, nose, mouth corners), so
`Detection.landmarks` holds those, the mouth corners placed where a frontal face has them relative to the eyes;
`Detection.points` keeps the predictor's own points, which the descriptor's alignment (`get_face_chip`) needs.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import dlib
import numpy as np

from faceauth.inference.models.detector import Detection, DetectorInput

DLIB_WEIGHTS_LICENSE = "CC0-1.0 (public domain): dlib's models, via the face-recognition-models wheel"
HOG_LICENSE = "BSL-1.0 (Boost): dlib's HOG detector, part of the dlib library"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150  # the descriptor's input: dlib's aligned face chip
CHIP_PADDING = 0.25

# The ArcFace template's mouth corners relative to its eyes, in units of the eye distance: x from the eyes'
# midpoint along the eye axis, y perpendicular to it (down the face).
_MOUTH_HALF_WIDTH = (70.7299 - 41.5493) / 2 / (73.5318 - 38.2946)
_MOUTH_DROP = (92.28 - 51.6) / (73.5318 - 38.2946)


def weights_dir() -> Path:
    """The wheel's model folder, found without importing the package (its `__init__` needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face-recognition-models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def arcface_landmarks(points: np.ndarray) -> np.ndarray:
    """dlib's 5 points (eye corners 0-1 and 2-3, nose base 4) -> ArcFace's 5 (eyes, nose, mouth corners; image
    left first). The mouth corners are estimated from the eyes: good for the blur window and the pose's yaw and
    roll, not for pitch."""
    eye_a, eye_b = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
    axis = right - left
    distance = float(np.hypot(*axis)) or 1.0
    along = axis / distance
    down = np.array([-along[1], along[0]])  # the eye axis turned 90° towards the chin (image y grows down)
    middle = (left + right) / 2 + down * _MOUTH_DROP * distance
    mouth_left = middle - along * _MOUTH_HALF_WIDTH * distance
    mouth_right = middle + along * _MOUTH_HALF_WIDTH * distance
    return np.stack([left, right, points[4], mouth_left, mouth_right]).astype(np.float32)


# HOG's box is a square from the brows to the chin; the anti-spoof model's crop (2.7x the box) was made for
# SCRFD's taller box, brow line to forehead. Median over the 64 deepface photos, both detectors on the same working
# copy: SCRFD's centre is 0.095 of the HOG height higher, its width 0.92 and its height 1.30 of HOG's.
_BOX_SHIFT_UP, _BOX_WIDTH, _BOX_HEIGHT = 0.095, 0.92, 1.30


def _scrfd_like(rect: dlib.rectangle) -> np.ndarray:
    width, height = rect.right() - rect.left(), rect.bottom() - rect.top()
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2 - _BOX_SHIFT_UP * height
    half_w, half_h = _BOX_WIDTH * width / 2, _BOX_HEIGHT * height / 2
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], np.float32)


class DlibHogDetector:
    """HOG + linear SVM face detector, then the 5-point shape predictor on each face.

    Inputs are the photo resized so its long side fits the input size, with a border of a fifth of that side on
    every edge: HOG's window needs some background around the face, so a face that fills the frame (a kiosk
    selfie) is found only with that margin. Faces smaller than ~80 px in the input are found only by upsampling
    the input (`upsample`), which the full-size pass does.
    """

    license = HOG_LICENSE
    _BORDER = 0.2

    def __init__(
        self,
        predictor_path: Path,
        *,
        input_size: tuple[int, int] = (640, 640),
        score_threshold: float = 0.0,
        upsample_full: int = 1,
    ) -> None:
        self.hog = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        self.model_id = f"dlib-hog+{predictor_path.stem}"
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.upsample_full = upsample_full

    def model_input(
        self, rgb: np.ndarray, input_size: tuple[int, int] | None = None, *, full_size: bool = False
    ) -> DetectorInput:
        """The resized, bordered photo (uint8 HxWx3). `full_size` is accepted for the pipeline's coarse pass;
        HOG runs on each photo alone, so there is no batch to pad for."""
        h, w = rgb.shape[:2]
        max_w, max_h = input_size or self.input_size
        scale = min(max_w / w, max_h / h, 1.0)
        resized = rgb
        if scale < 1.0:
            resized = cv2.resize(
                rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        border = math.ceil(max(resized.shape[:2]) * self._BORDER)
        padded = cv2.copyMakeBorder(resized, border, border, border, border, cv2.BORDER_REPLICATE)
        return DetectorInput(padded, scale, w, h)

    def input_scale(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> float:
        max_w, max_h = input_size or self.input_size
        return min(max_w / rgb.shape[1], max_h / rgb.shape[0], 1.0)

    def detect(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> list[Detection]:
        """All faces, largest first; the full-size pass, upsampled once so that small faces are found."""
        return self._detect(self.model_input(rgb, input_size), self.upsample_full)

    def detect_batch(self, inputs: list[DetectorInput]) -> list[list[Detection]]:
        """The coarse pass (no upsampling): one photo after the other, as HOG has no batch."""
        return [self._detect(item, 0) for item in inputs]

    def _detect(self, item: DetectorInput, upsample: int) -> list[Detection]:
        image = item.blob
        border = (image.shape[0] - round(item.height * item.scale)) // 2
        rects, scores, _ = self.hog.run(image, upsample, self.score_threshold)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self.predictor(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            points = (points - border) / item.scale
            box = (_scrfd_like(rect) - border) / item.scale
            box[[0, 2]] = box[[0, 2]].clip(0, item.width)
            box[[1, 3]] = box[[1, 3]].clip(0, item.height)
            # HOG's SVM margin is unbounded (about 0 to 3): squashed into (0, 1) for the answers' score.
            confidence = float(1.0 / (1.0 + math.exp(-2.0 * score)))
            faces.append(Detection(box, confidence, arcface_landmarks(points), points=points))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


class DlibResnetEmbedder:
    """dlib's ResNet-29 face descriptor: a 128-d vector of dlib's 150x150 face chip, made unit length (the
    service compares vectors by cosine; dlib's own 0.6 Euclidean threshold becomes a calibrated cosine one)."""

    license = DLIB_WEIGHTS_LICENSE
    dim = 128

    def __init__(self, descriptor_path: Path, *, model_id: str) -> None:
        self.network = dlib.face_recognition_model_v1(str(descriptor_path))
        self.model_id = model_id

    def align(self, rgb: np.ndarray, face: Detection) -> np.ndarray:
        """dlib's chip: the predictor's points mapped onto dlib's template (with its 25 % padding)."""
        if face.points is None:
            raise ValueError("the dlib descriptor needs the dlib shape predictor's points")
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        parts = [dlib.point(round(float(x)), round(float(y))) for x, y in face.points]
        shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2), parts)
        return np.asarray(dlib.get_face_chip(np.ascontiguousarray(rgb), shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def from_crop(self, rgb: np.ndarray) -> np.ndarray:
        """An already-cropped face (aligned=true): centred on a square and resized to the chip."""
        height, width = rgb.shape[:2]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        square = cv2.copyMakeBorder(rgb, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT)
        return cv2.resize(square, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_AREA)

    def embed_aligned(self, chips: list[np.ndarray]) -> np.ndarray:
        """150x150 RGB chips -> (N, 128) unit vectors, in one batched call."""
        vectors = np.array(self.network.compute_face_descriptor([np.ascontiguousarray(c) for c in chips]), np.float32)
        vectors = vectors.reshape(len(chips), self.dim)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
