"""The reference system's torchvision classifiers, without torchvision: ``*.pth`` checkpoints run on torch, and
their ONNX conversions (``faceauth models convert``, faceauth.inference.tools.convert) run on ONNX Runtime.

The reference system's image-quality models are torchvision classifiers whose last layer was replaced by
an N-class head: NSFW = MobileNetV2, anti-spoof = MobileNetV3-Large, blur = ResNet18. PyPI's torchvision is
a CUDA build that fails to import here, so the three architectures are re-implemented below in plain
``torch.nn`` with torchvision's module names, shapes and BatchNorm settings: ``load_state_dict(strict=True)``
accepts a real torchvision state dict unchanged.

torch is the optional ``torch`` extra. This module imports without it: torch is imported inside the functions that
need it, and ``preprocess_imagenet`` and ``ConvertedClassifier`` are numpy/OpenCV/ONNX Runtime only.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
import onnxruntime as ort

from faceauth.inference.artefacts.catalog import sha256_file
from faceauth.inference.runtime import run_in_batches, softmax

if TYPE_CHECKING:
    from torch import nn

ARCHS = ("mobilenet_v2", "mobilenet_v3_large", "resnet18")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The final Linear layer of each architecture: its weight is [num_classes, features].
_HEAD_KEY = {
    "mobilenet_v2": "classifier.1.weight",
    "mobilenet_v3_large": "classifier.3.weight",
    "resnet18": "fc.weight",
}
# Wrappers training scripts put around a state dict, and key prefixes added by DataParallel/DDP and
# torch.compile.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_KEY_PREFIXES = ("module.", "_orig_mod.")

INSTALL_HINT = "install the 'torch' extra: uv sync --extra torch (or pip install 'faceauth[torch]')"


def require_torch():
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError(f"PyTorch is needed to load .pth checkpoints; {INSTALL_HINT}") from exc
    return torch


# --------------------------------------------------------------------------------------------------
# Architectures (torchvision-compatible names; width multiplier 1.0 only)
# --------------------------------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` the way torchvision does (never drop >10%)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@functools.cache
def _architectures() -> dict[str, Any]:
    """Define the model classes on first use, so that importing this module never imports torch."""
    torch = require_torch()
    from torch import nn
    from torch.nn import functional as F

    def conv_bn(cin, cout, kernel, *, stride=1, groups=1, act=None, bn_eps=1e-5, bn_momentum=0.1):
        # torchvision's Conv2dNormActivation: a Sequential of conv (no bias), BN, [activation] -> keys .0/.1
        layers = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        return nn.Sequential(*layers)

    class V2Block(nn.Module):
        """MobileNetV2 inverted residual; the layers live in ``conv`` as in torchvision."""

        def __init__(self, cin: int, cout: int, stride: int, expand: int):
            super().__init__()
            hidden = round(cin * expand)
            layers = [] if expand == 1 else [conv_bn(cin, hidden, 1, act=nn.ReLU6)]
            layers += [
                conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, act=nn.ReLU6),
                nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck: bare conv + BN, no activation
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        # expand ratio t, output channels c, repeats n, first stride s
        SETTINGS = (
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        )

        def __init__(self, num_classes: int):
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, 32, 3, stride=2, act=nn.ReLU6)]
            cin = 32
            for t, c, n, s in self.SETTINGS:
                for i in range(n):
                    layers.append(V2Block(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    class SqueezeExcite(nn.Module):
        """torchvision.ops.SqueezeExcitation as MobileNetV3 uses it: ReLU inside, hard-sigmoid gate."""

        def __init__(self, channels: int):
            super().__init__()
            squeeze = _make_divisible(channels // 4)
            self.fc1 = nn.Conv2d(channels, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, channels, 1)

        def forward(self, x):
            scale = F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))
            return x * F.hardsigmoid(self.fc2(scale))

    # MobileNetV3 uses TensorFlow-style BatchNorm settings; eps changes inference results.
    v3_bn = {"bn_eps": 1e-3, "bn_momentum": 0.01}

    class V3Block(nn.Module):
        """MobileNetV3 inverted residual; layers live in ``block`` as in torchvision."""

        def __init__(self, cin, kernel, hidden, cout, use_se, hard_swish, stride):
            super().__init__()
            act = nn.Hardswish if hard_swish else nn.ReLU
            layers: list[nn.Module] = []
            if hidden != cin:  # torchvision skips the expansion conv when it would be 1:1
                layers.append(conv_bn(cin, hidden, 1, act=act, **v3_bn))
            layers.append(conv_bn(hidden, hidden, kernel, stride=stride, groups=hidden, act=act, **v3_bn))
            if use_se:
                layers.append(SqueezeExcite(hidden))
            layers.append(conv_bn(hidden, cout, 1, **v3_bn))
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.block(x) if self.residual else self.block(x)

    class MobileNetV3Large(nn.Module):
        # in, kernel, expanded, out, squeeze-excite, hard-swish (else ReLU), stride (paper, table 1)
        SETTINGS = (
            (16, 3, 16, 16, False, False, 1),
            (16, 3, 64, 24, False, False, 2),
            (24, 3, 72, 24, False, False, 1),
            (24, 5, 72, 40, True, False, 2),
            (40, 5, 120, 40, True, False, 1),
            (40, 5, 120, 40, True, False, 1),
            (40, 3, 240, 80, False, True, 2),
            (80, 3, 200, 80, False, True, 1),
            (80, 3, 184, 80, False, True, 1),
            (80, 3, 184, 80, False, True, 1),
            (80, 3, 480, 112, True, True, 1),
            (112, 3, 672, 112, True, True, 1),
            (112, 5, 672, 160, True, True, 2),
            (160, 5, 960, 160, True, True, 1),
            (160, 5, 960, 160, True, True, 1),
        )

        def __init__(self, num_classes: int):
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, 16, 3, stride=2, act=nn.Hardswish, **v3_bn)]
            layers += [V3Block(*cfg) for cfg in self.SETTINGS]
            layers.append(conv_bn(160, 960, 1, act=nn.Hardswish, **v3_bn))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(960, 1280),
                nn.Hardswish(inplace=True),
                nn.Dropout(0.2),
                nn.Linear(1280, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:  # projection shortcut when the shape changes
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self, num_classes: int):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
            self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
            self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
            self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return {"mobilenet_v2": MobileNetV2, "mobilenet_v3_large": MobileNetV3Large, "resnet18": ResNet18}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """An untrained torchvision-compatible ``arch`` with an ``num_classes``-way head (in train mode)."""
    if arch not in ARCHS:
        raise ValueError(f"unsupported architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return _architectures()[arch](num_classes)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def detect_arch(state_dict: Mapping[str, Any]) -> str:
    """Name the architecture a torchvision state dict belongs to, from its key names alone."""
    keys = set(state_dict)
    if "fc.weight" in keys and "layer4.1.conv2.weight" in keys:
        # ResNet-34/50 share these names; ResNet18 has exactly two BasicBlocks (no conv3) per stage.
        if "layer1.2.conv1.weight" in keys or "layer1.0.conv3.weight" in keys:
            raise ValueError("this is a deeper ResNet (34/50/...), only resnet18 is supported")
        return "resnet18"
    if "classifier.1.weight" in keys and "features.18.0.weight" in keys and "features.1.conv.0.0.weight" in keys:
        return "mobilenet_v2"
    if "classifier.3.weight" in keys and "features.16.0.weight" in keys and "features.1.block.0.0.weight" in keys:
        return "mobilenet_v3_large"  # MobileNetV3-Small ends at features.12 and is not matched
    sample = ", ".join(sorted(keys)[:6])
    raise ValueError(
        f"cannot recognise the architecture of this state dict (supported: {', '.join(ARCHS)}); first keys: {sample}"
    )


def _num_classes(state_dict: Mapping[str, Any], arch: str) -> int:
    head = state_dict.get(_HEAD_KEY[arch])
    if head is None or getattr(head, "ndim", 0) != 2:
        raise ValueError(f"state dict has no 2-D {_HEAD_KEY[arch]!r} (the final Linear layer of {arch})")
    return int(head.shape[0])


def _unwrap(obj: Any) -> dict[str, Any]:
    """Find the state dict inside a training checkpoint and strip wrapper prefixes from its keys."""
    torch = require_torch()
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    state = dict(obj)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"not a state dict: entries that are not tensors, e.g. {bad[:3]}")
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def load_checkpoint(path: str | os.PathLike[str], arch: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a torchvision-classifier ``.pth`` into an eval-mode module.

    Only tensors and plain containers are unpickled (``weights_only=True``): a checkpoint is untrusted input
    and a full pickle can run arbitrary code. ``arch`` is detected from the key names when not given.
    Returns ``(module, meta)`` with meta keys ``arch``, ``num_classes``, ``sha256``, ``path``.
    """
    torch = require_torch()
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refusing to unpickle Python objects (it looks like a whole model was saved with "
            "torch.save(model)). Re-save only the weights with torch.save(model.state_dict(), path)."
        ) from exc
    state = _unwrap(obj)
    arch = arch or detect_arch(state)
    if arch not in ARCHS:
        raise ValueError(f"unsupported architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    num_classes = _num_classes(state, arch)
    module = build_model(arch, num_classes)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit a torchvision {arch}: {exc}") from exc
    module.eval()
    meta = {"arch": arch, "num_classes": num_classes, "sha256": sha256_file(path), "path": str(path)}
    return module, meta


# --------------------------------------------------------------------------------------------------
# Preprocessing and runtime
# --------------------------------------------------------------------------------------------------


def preprocess_imagenet(images_rgb_uint8: list[np.ndarray], input_size: int = 224) -> np.ndarray:
    """RGB uint8 HxWx3 images -> float32 [N, 3, S, S]: resize to S x S, /255, ImageNet mean/std.

    No crop and no aspect-ratio preservation. INTER_AREA when shrinking (it averages, like an antialiased
    resize), bilinear when enlarging.
    """
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    out = np.empty((len(images_rgb_uint8), 3, input_size, input_size), np.float32)
    for i, img in enumerate(images_rgb_uint8):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image {i}: expected an RGB uint8 HxWx3 array, got {img.dtype} {img.shape}")
        shrink = img.shape[0] * img.shape[1] > input_size * input_size
        resized = cv2.resize(
            img, (input_size, input_size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        out[i] = ((resized.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    return out


class Classifier(Protocol):
    """A torchvision classifier, on torch or converted to ONNX: ``predict_proba`` gives softmax probabilities."""

    name: str
    input_size: int
    num_classes: int  # 0: not recorded (a conversion made without faceauth's metadata)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...


class TorchClassifier:
    """A ``.pth`` torchvision classifier run with PyTorch: ``predict_proba`` returns softmax probabilities."""

    def __init__(self, path: str | os.PathLike[str], arch: str | None = None, device: str = "cpu"):
        torch = require_torch()
        self.name = Path(path).name
        self.module, self.meta = load_checkpoint(path, arch)
        self.arch: str = self.meta["arch"]
        self.num_classes: int = self.meta["num_classes"]
        self.input_size = 224
        self.device = torch.device(device)
        self.module.to(self.device)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, S, S] (from ``preprocess_imagenet``) -> float32 [N, num_classes]."""
        torch = require_torch()
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a [N, 3, H, W] batch, got shape {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            return torch.softmax(self.module(x), dim=1).cpu().numpy()


CONVERTED_KIND = "torchvision-classifier"  # `faceauth.kind` in the metadata of a converted model


def is_converted(session: ort.InferenceSession) -> bool:
    """Is this ONNX model a torchvision classifier converted by `faceauth models convert`?"""
    return session.get_modelmeta().custom_metadata_map.get("faceauth.kind") == CONVERTED_KIND


class ConvertedClassifier:
    """A converted torchvision classifier on ONNX Runtime; its input size and classes come from its metadata."""

    def __init__(self, session: ort.InferenceSession, *, name: str) -> None:
        self.session = session
        self.name = name
        meta = session.get_modelmeta().custom_metadata_map
        self.input_size = int(meta.get("faceauth.input_size", 224))
        self.num_classes = int(meta.get("faceauth.num_classes", 0))

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        return softmax(run_in_batches(self.session, batch)[0])
