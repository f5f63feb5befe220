"""int8 copies of the face pack's detector and embedder, by ONNX Runtime static quantization.

Static: activation ranges come from running the fp32 model over calibration inputs made from face photos
exactly as the service makes them (the detector's normalised, 32-px-padded photo at the sizes the service
runs it at; the embedder's aligned 112x112 faces found by the fp32 detector). Weights are int8 per output
channel, activations uint8 per tensor (the u8s8 product is what VNNI's VPDPBUSD computes), in QDQ format:
ONNX Runtime fuses each DequantizeLinear -> Conv -> QuantizeLinear into one integer conv when it loads the
model.

Uses the `onnx` package (a dependency of the service, for faceauth.inference.rewrite) and ONNX Runtime's
quantization tools.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from faceauth.config import MLSettings
from faceauth.inference.alignment import align_face
from faceauth.inference.artefacts import registry
from faceauth.inference.models.detector import ScrfdDetector
from faceauth.inference.runtime import create_session

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
Kind = Literal["detector", "embedder"]


@dataclass(frozen=True)
class QuantizeOptions:
    per_channel: bool = True
    # uint8 activations x int8 weights is the product VNNI's VPDPBUSD computes; int8 x int8 (s8s8) measured
    # both less accurate (mean cosine to fp32 0.943 against 0.968, minmax) and slower on this CPU.
    activation: Literal["uint8", "int8"] = "uint8"
    fmt: Literal["qdq", "qoperator"] = "qdq"
    # percentile ignores the rarest 0.001 % of activations when setting ranges (finer steps for the rest); it
    # needs calibration inputs of one shape, so the detector (inputs sized to each photo) uses minmax.
    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    # The first conv sees raw pixels: fp32 there costs little time and brings the embedder closer to fp32
    # (mean cosine 0.983 -> 0.987 with minmax).
    keep_first_conv_fp32: bool = True
    # Keep the detector's last convs (scores, box and landmark offsets) fp32. Measured: no better landmarks,
    # slower (each head then needs a DequantizeLinear), so off.
    keep_heads_fp32: bool = False
    # Convs with a few channels per group (not dense, not depthwise) stay fp32: ONNX Runtime's int8 conv has
    # no fast path for them (w600k_mbf's second conv, 2 channels x 64 groups: 4.8 ms int8 against 0.7 ms fp32).
    keep_grouped_fp32: bool = True
    keep_fp32: tuple[str, ...] = ()  # further nodes kept fp32, by name
    ops: tuple[str, ...] = ("Conv", "Gemm", "MatMul")


# Chosen on the calibration split of the test photos (docs/PERFORMANCE.md, "int8").
DEFAULT_OPTIONS: dict[str, QuantizeOptions] = {
    "embedder": QuantizeOptions(method="percentile"),
    "detector": QuantizeOptions(method="minmax"),
}


def photo_paths(directory: Path, limit: int | None = None) -> list[Path]:
    paths = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    return paths[:limit] if limit else paths


def read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


def detector_inputs(detector: ScrfdDetector, photos: Iterable[np.ndarray], sizes: Sequence[int]) -> list[np.ndarray]:
    """(1, 3, h, w) detector inputs as the service makes them, at each size it runs (coarse and full)."""
    return [detector.model_input(rgb, (size, size)).blob[None] for rgb in photos for size in sizes]


def embedder_inputs(
    detector: ScrfdDetector, photos: Iterable[np.ndarray], faces_per_photo: int = 4
) -> list[np.ndarray]:
    """(1, 3, 112, 112) normalised aligned faces, the largest few per photo, found by the fp32 detector."""
    out = []
    for rgb in photos:
        for face in detector.detect(rgb)[:faces_per_photo]:
            crop = align_face(rgb, face.landmarks).astype(np.float32)
            out.append(((crop - 127.5) / 127.5).transpose(2, 0, 1)[None])
    return out


def head_convs(model) -> list[str]:
    """Names of the convs whose output reaches a graph output without passing through another conv."""
    producers = {out: node for node in model.graph.node for out in node.output}
    heads, stack, seen = [], [o.name for o in model.graph.output], set()
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Conv":
            heads.append(node.name)
        else:
            stack.extend(node.input)
    return heads


def grouped_convs(model) -> list[str]:
    """Names of the convs with group > 1 and more than one input channel per group."""
    from onnx import helper

    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1])
        if group > 1 and weight is not None and weight[1] > 1:
            names.append(node.name)
    return names


def quantize_model(
    src: Path, dst: Path, inputs: Sequence[np.ndarray], kind: Kind, options: QuantizeOptions | None = None
) -> Path:
    """Writes the int8 model to `dst` (atomically) from calibration `inputs` for the model's one input."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    options = options or DEFAULT_OPTIONS[kind]
    if not inputs:
        raise ValueError(f"no calibration inputs for the {kind}: are there faces in the calibration photos?")
    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}  # old exports list them among the inputs too
    input_name = next(i.name for i in graph.input if i.name not in weights)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{input_name: x} for x in inputs])

        def get_next(self):
            return next(self._feeds, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="faceauth-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds BatchNormalization into convs and the like first, so what gets quantized is what ORT runs.
        # The symbolic shape pass needs sympy, which we do not ship; ONNX's own shape inference suffices.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        if model.opset_import[0].version < 13 and options.per_channel and options.fmt == "qdq":
            # Per-channel QuantizeLinear/DequantizeLinear need opset 13.
            model = onnx.version_converter.convert_version(model, 13)
            onnx.save(model, str(prepared))
        exclude = list(options.keep_fp32)
        if kind == "detector" and options.keep_heads_fp32:
            exclude += head_convs(model)
        if options.keep_grouped_fp32:
            exclude += grouped_convs(model)
        if options.keep_first_conv_fp32:
            exclude += [next(n.name for n in model.graph.node if n.op_type == "Conv")]
        activation = QuantType.QUInt8 if options.activation == "uint8" else QuantType.QInt8
        method = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[options.method]
        tmp_out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(tmp_out),
            Reader(),
            quant_format=QuantFormat.QDQ if options.fmt == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(options.ops),
            per_channel=options.per_channel,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=method,
            # uint8 activations are asymmetric: post-ReLU tensors use the whole 0..255 range.
            extra_options={"ActivationSymmetric": options.activation == "int8", "WeightSymmetric": True},
        )
        int8 = onnx.load(str(tmp_out))
        meta = {"faceauth.int8_of": src.name, "faceauth.int8_calibration_inputs": str(len(inputs))}
        for key, value in meta.items():
            entry = int8.metadata_props.add()
            entry.key, entry.value = key, value
        partial = dst.with_suffix(".partial")
        onnx.save(int8, str(partial))
        partial.replace(dst)
    return dst


def quantize_pack(
    settings: MLSettings,
    calibration: Path | Sequence[Path],
    kinds: Sequence[Kind] = ("embedder", "detector"),
    *,
    max_photos: int | None = 200,
    options: dict[str, QuantizeOptions] | None = None,
) -> dict[str, Path]:
    """The configured face pack's int8 copies, written where the loader looks for them (under model_dir).

    `calibration` is a folder of face photos (the first `max_photos` by name) or a list of photo files.
    """
    pack = registry.resolve_face_pack(settings.face_model, settings.model_dir)
    paths = photo_paths(calibration, max_photos) if isinstance(calibration, Path) else list(calibration)
    photos = [rgb for rgb in (read_rgb(p) for p in paths) if rgb is not None]
    if not photos:
        raise ValueError(f"no readable photos ({', '.join(PHOTO_SUFFIXES)}) in {calibration}")
    detector = ScrfdDetector(
        create_session(pack.detector, intra_op_threads=settings.intra_op_threads),
        name=pack.detector.name,
        input_size=settings.detection_size,
        score_threshold=settings.face_detection_threshold,
    )
    written: dict[str, Path] = {}
    for kind in kinds:
        src = pack.detector if kind == "detector" else pack.embedder
        dst = registry.int8_model_path(settings.model_dir, src)
        if kind == "detector":
            sizes = sorted({settings.face_detection_coarse_size, *settings.detection_size} - {0})
            inputs = detector_inputs(detector, photos, sizes)
        else:
            inputs = embedder_inputs(detector, photos)
        log.info("quantizing %s (%s) from %d inputs of %d photos", kind, src.name, len(inputs), len(photos))
        written[kind] = quantize_model(src, dst, inputs, kind, (options or DEFAULT_OPTIONS)[kind])
    return written
