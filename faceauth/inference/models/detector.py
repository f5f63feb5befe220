"""SCRFD face detector (boxes + 5 landmarks), for any SCRFD `*_bnkps` ONNX export.

The network is fully convolutional, so instead of always padding to the configured square we feed an
input just large enough for the resized photo (a multiple of 32): a 4:3 photo costs 3/4 of a square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

_STRIDES = (8, 16, 32)
INSIGHTFACE_WEIGHTS_LICENSE = "InsightFace weights: non-commercial research use only"
_ANCHORS_PER_CELL = 2


@dataclass(frozen=True, slots=True)
class Detection:
    """One face in the coordinates of the image given to `detect`."""

    box: np.ndarray  # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth corner, right mouth corner (image left/right)
    # The detector's own landmark set when an embedder aligns by it rather than by `landmarks` (dlib's 5 points).
    points: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float) -> Detection:
        points = None if self.points is None else self.points * factor
        return Detection(self.box * factor, self.score, self.landmarks * factor, points)


@dataclass(frozen=True, slots=True)
class DetectorInput:
    """One photo prepared for the network: what `detect_batch` needs to map its output back to the photo."""

    blob: np.ndarray  # (3, h, w) float32
    scale: float  # network input px per photo px
    width: int  # the photo's size
    height: int


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class ScrfdDetector:
    license = INSIGHTFACE_WEIGHTS_LICENSE

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        name: str = "SCRFD model",
        input_size: tuple[int, int] = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ) -> None:
        self.session = session
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if len(outputs) != 9:
            raise ValueError(f"{name}: expected an SCRFD model with landmarks (9 outputs), got {len(outputs)}")
        self.output_names = outputs
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._anchor_cache: dict[tuple[int, int, int], np.ndarray] = {}

    def _anchor_centers(self, height: int, width: int, stride: int) -> np.ndarray:
        key = (height, width, stride)
        centers = self._anchor_cache.get(key)
        if centers is None:
            gh, gw = height // stride, width // stride
            ys, xs = np.mgrid[:gh, :gw]
            grid = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
            centers = np.repeat(grid, _ANCHORS_PER_CELL, axis=0)
            self._anchor_cache[key] = centers
        return centers

    def model_input(
        self, rgb: np.ndarray, input_size: tuple[int, int] | None = None, *, full_size: bool = False
    ) -> DetectorInput:
        """The photo resized to fit `input_size` (default: the configured size), normalised, as (3, h, w) with
        h and w multiples of 32 (the network's largest stride); the padding is grey (0 after normalising).

        `full_size` pads to the whole `input_size`: a batch of such inputs needs no further padding, so a
        photo's detections are the same whatever it is batched with (padding shifts them by a fraction of
        a pixel)."""
        h, w = rgb.shape[:2]
        max_w, max_h = input_size or self.input_size
        scale = min(max_w / w, max_h / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        in_w, in_h = math.ceil(new_w / 32) * 32, math.ceil(new_h / 32) * 32
        if full_size:
            in_w, in_h = max(in_w, math.ceil(max_w / 32) * 32), max(in_h, math.ceil(max_h / 32) * 32)
        blob = np.zeros((3, in_h, in_w), dtype=np.float32)
        blob[:, :new_h, :new_w] = (resized.transpose(2, 0, 1).astype(np.float32) - 127.5) / 128.0
        return DetectorInput(blob, scale, w, h)

    def input_scale(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> float:
        """Detector input px per image px."""
        max_w, max_h = input_size or self.input_size
        return min(max_w / rgb.shape[1], max_h / rgb.shape[0])

    def detect(self, rgb: np.ndarray, input_size: tuple[int, int] | None = None) -> list[Detection]:
        """All faces above the score threshold, largest first. `input_size` bounds the network input
        (default: the configured detection size)."""
        return self.detect_batch([self.model_input(rgb, input_size)])[0]

    def detect_batch(self, inputs: list[DetectorInput]) -> list[list[Detection]]:
        """One network run over several photos' inputs. Inputs of different sizes are padded (grey, at the
        bottom/right, as each already is) to the largest, which leaves every photo's anchors where they were."""
        in_h = max(i.blob.shape[1] for i in inputs)
        in_w = max(i.blob.shape[2] for i in inputs)
        batch = np.zeros((len(inputs), 3, in_h, in_w), dtype=np.float32)
        for row, item in enumerate(inputs):
            batch[row, :, : item.blob.shape[1], : item.blob.shape[2]] = item.blob
        outs = self.session.run(self.output_names, {self.input_name: batch})
        # A batch-1 export folds the batch into the anchor axis; with N images the outputs are (N, anchors, k).
        per_image = [[out.reshape(len(inputs), -1, out.shape[-1])[row] for out in outs] for row in range(len(inputs))]
        return [self._decode(o, in_h, in_w, item) for o, item in zip(per_image, inputs, strict=True)]

    def _decode(self, outs: list[np.ndarray], in_h: int, in_w: int, item: DetectorInput) -> list[Detection]:
        all_scores, all_boxes, all_kps = [], [], []
        for level, stride in enumerate(_STRIDES):
            scores = outs[level].reshape(-1)
            deltas = outs[level + 3].reshape(-1, 4) * stride
            kps_deltas = outs[level + 6].reshape(-1, 10) * stride
            centers = self._anchor_centers(in_h, in_w, stride)
            keep = np.nonzero(scores >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            c = centers[keep]
            d = deltas[keep]
            all_boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            all_kps.append(np.tile(c, 5) + kps_deltas[keep])
            all_scores.append(scores[keep])
        if not all_scores:
            return []
        scores = np.concatenate(all_scores)
        boxes = np.concatenate(all_boxes) / item.scale
        kps = np.concatenate(all_kps).reshape(-1, 5, 2) / item.scale
        keep_idx = nms(boxes, scores, self.nms_threshold)
        faces = []
        for i in keep_idx:
            box = boxes[i].copy()
            box[[0, 2]] = box[[0, 2]].clip(0, item.width)
            box[[1, 3]] = box[[1, 3]].clip(0, item.height)
            faces.append(Detection(box=box, score=float(scores[i]), landmarks=kps[i]))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
