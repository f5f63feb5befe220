"""Photo-like images and random torchvision-compatible classifiers whose outputs depend on their input, for the
checkpoint, conversion and reference-check tests."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from faceauth.inference.models import torchvision as tc


def synthetic_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like RGB test image: gradients, a filled disc, text and sensor-like noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], axis=-1).astype(np.uint8)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 5, (240, 30, 60), -1)
    cv2.putText(img, "faceauth", (w // 10, h - h // 8), cv2.FONT_HERSHEY_SIMPLEX, w / 400, (10, 10, 10), 2)
    noise = np.random.default_rng(seed).integers(-20, 21, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def photo_like_images() -> list[np.ndarray]:
    # Different sizes and aspect ratios, one heavily blurred.
    return [
        synthetic_rgb(480, 640, 0),
        synthetic_rgb(300, 300, 1),
        cv2.GaussianBlur(synthetic_rgb(720, 405, 2), (0, 0), 6),
    ]


@functools.cache  # shared read-only across tests: building and calibrating is the slow part
def trained_like(torch, arch: str, num_classes: int, seed: int = 0):
    """A random model whose outputs depend on the input, like a trained one's.

    With PyTorch's default init the MobileNets' activations vanish and every image gets the same output, which
    would make output comparisons vacuous. So: He-init convs, random BN affine, BN running statistics
    calibrated on data (non-default buffers also catch a loader that drops them), a moderate head.
    """
    torch.manual_seed(seed)
    model = tc.build_model(arch, num_classes)
    photos = torch.from_numpy(tc.preprocess_imagenet(photo_like_images()))
    calibration = torch.cat([photos, torch.randn(8, 3, 224, 224)])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the calibration pass
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, 0.0, 0.05)
        model.train()
        model(calibration)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.01 if arch == "mobilenet_v3_large" else 0.1
    return model.eval()
