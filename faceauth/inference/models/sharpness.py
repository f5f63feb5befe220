"""Calibrated sharpness (blur) classifier on the aligned face: ``P(blurry)`` from ten image statistics.

The blur we have to catch is defined in *pixels of the original photo* (a Gaussian of sigma 3, a linear
motion of 15 px), whatever the size of the face. A face-normalised crop (112 px) would shrink a sigma-3 blur
on a 1250 px face to 0.3 px, so the classifier looks at the face at its native pixel density instead: a
rotation-only warp (no scaling) of the eyes-nose-mouth region (64x64 ArcFace-template pixels, centred on the
5 landmarks), capped at 256x256 px (the centre of a huge face), in grey levels. ``scale`` (decoded px per
original px) lets every feature that measures a width convert it to original pixels.

Features (cheap OpenCV / numpy ops on <= 256x256 px), in two groups.

Isotropic blur (defocus, Gaussian):

* ``log_rmin_0.5``, ``log_rmin_1``, ``log_rmin_2`` -- directional re-blur ratios: for 12 directions, the
  log of the directional gradient energy of the window over that of the window re-blurred by a Gaussian of
  sigma 0.5 / 1 / 2 px; the *minimum over directions*, logged. A sharp image loses a lot of gradient energy
  when re-blurred, an already blurred one little (the ratio shrinks like 1 / blur-width^2).
* ``edge_width`` -- the blur of the sharpest edges in original pixels: at non-maximum-suppressed edge
  pixels, the gradient magnitude before / after a sigma-1 re-blur gives the edge's own blur
  (sigma = 1 / sqrt(R^2 - 1) for a step edge), per gradient orientation (4 bins) over the strongest 30 %
  of edges; the log of the widest bin, minus log(scale). Contrast-independent.
* ``log_density`` -- log(window px per original px) = log(scale): moves the threshold for photos decoded
  at reduced resolution, where a sigma-3 blur is only 1.5 decoded px.

Linear motion blur. A box blur keeps the image sharp across the motion and the *difference of two
shifted sharp copies* along it, so re-blur ratios of a richly textured face (a 1250-px face at native
resolution is mostly pores and stubble) barely drop: these features look at the structure instead, and
each only counts the excess above what sharp faces show (a hinge at a fixed knot, 0 below it):

* ``cepstral_excess`` -- the motion's sinc zeros repeat every 1/L in the spectrum, so the cepstrum
  (transform of the log power spectrum) has a deep negative peak at distance L; depth of the most
  negative value in the annulus 8 px..W/3 in standard deviations, logged, minus log(6).
* ``coherence_excess_1``, ``coherence_excess_2`` -- the band-passed window (minus its Gaussian blur of
  sigma 1 / 2) becomes elongated along the motion: the distance of its normalised structure tensor
  ((Exx - Eyy) / (Exx + Eyy), 2 Exy / (Exx + Eyy)) from where sharp aligned faces sit (centre and spread
  fitted on sharp faces), minus 3 spreads. Robust to JPEG re-compression.
* ``anisotropy_excess_1``, ``anisotropy_excess_2`` -- log(max / min over directions of the re-blur ratio)
  at sigma 1 / 2, minus 0.35: blurred along one direction, sharp across it.

Model: two L2-penalised logistic regressions on standardised features, one per group (the isotropic
expert fitted on sharp vs Gaussian-blurred faces, the motion expert on sharp vs motion-blurred ones),
combined by a noisy OR: P(blurry) = 1 - (1 - p_isotropic)(1 - p_motion). A single linear model cannot
express "blurred along one direction although very sharp across it": on a huge face the sharpness across
the motion outvoted the motion evidence. Fitted with numpy by ``python -m bench.calibrate_blur`` (sharp photos,
JPEG re-compressions, reduced-resolution decodes, upscaled soft copies and their Gaussian- and
motion-blurred versions; leave-one-photo-out validated); the coefficient block below is its output.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from faceauth.inference.alignment import ARCFACE_TEMPLATE, similarity_transform

MODEL_ID = "faceauth-sharpness-v1"

ISOTROPIC_FEATURES = ("log_rmin_0.5", "log_rmin_1", "log_rmin_2", "edge_width", "log_density")
MOTION_FEATURES = (
    "cepstral_excess",
    "coherence_excess_1",
    "coherence_excess_2",
    "anisotropy_excess_1",
    "anisotropy_excess_2",
)
FEATURE_NAMES = ISOTROPIC_FEATURES + MOTION_FEATURES

# Motion evidence only counts above what sharp faces show (upper tail of sharp originals and their JPEG
# copies): a cepstral dip of 6 standard deviations, a coherence distance of 3 spreads, a directional
# re-blur anisotropy of 0.35 (log). Below the knot the feature is 0, so it cannot make a sharp face
# look sharper or a soft one blurrier.
CEPSTRAL_KNOT = math.log(6.0)
COHERENCE_KNOT = 3.0
ANISOTROPY_KNOT = 0.35

# Window: this many ArcFace-template px (112 = the aligned face) around the landmarks' centre, at native
# pixel density, never more than WINDOW_CAP px on a side.
REGION_TEMPLATE_PX = 64.0
REGION_CENTER = ARCFACE_TEMPLATE.mean(axis=0)
WINDOW_CAP = 256
WINDOW_MIN = 24

_REBLUR_SIGMAS = (0.5, 1.0, 2.0)
_DIRECTIONS = np.radians(np.arange(0.0, 180.0, 15.0))
_COS2 = np.cos(_DIRECTIONS) ** 2
_SIN2 = np.sin(_DIRECTIONS) ** 2
_CS2 = 2.0 * np.cos(_DIRECTIONS) * np.sin(_DIRECTIONS)
_TAN_22_5 = math.tan(math.radians(22.5))
_EDGE_FLOOR = 1.0  # grey levels per px: weaker "edges" are noise
_EDGE_TOP = 0.3  # fraction of the strongest edges per orientation bin
_CEPSTRUM_RMIN_ORIGINAL_PX = 8.0

# BEGIN CALIBRATED COEFFICIENTS (generated by python -m bench.calibrate_blur; do not edit by hand)
DEFAULT_COEFFICIENTS: dict = {
    "model_id": "faceauth-sharpness-v1",
    "coherence_centre": {"1": [-0.159321, 0.00566744], "2": [-0.191524, 0.00556039]},
    "coherence_spread": {"1": [0.185195, 0.0600782], "2": [0.183882, 0.0638405]},
    "isotropic": {
        "features": ["log_rmin_0.5", "log_rmin_1", "log_rmin_2", "edge_width", "log_density"],
        "mean": [-3.16274, -1.87501, -0.939068, 0.758856, -0.0523519],
        "std": [1.17409, 1.13879, 0.977078, 0.615708, 0.183137],
        "weights": [-1.91074, -2.05712, -2.21934, 2.0376, -0.0286411],
        "intercept": -0.819371,
    },
    "motion": {
        "features": [
            "cepstral_excess",
            "coherence_excess_1",
            "coherence_excess_2",
            "anisotropy_excess_1",
            "anisotropy_excess_2",
        ],
        "mean": [0.596124, 5.21529, 4.89637, 0.642427, 0.529032],
        "std": [0.388226, 3.62264, 3.26661, 0.360623, 0.311827],
        "weights": [1.91183, 1.8296, 3.27868, 2.44088, 3.54943],
        "intercept": 14.9765,
    },
    "l2_penalty": 1.0,
    "training_samples": 3236,
}
# END CALIBRATED COEFFICIENTS


def _gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Sobel / 8: grey levels per pixel.
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    return gx, gy


def _tensor(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float, float]:
    n = float(gx.size)
    gxf, gyf = gx.ravel(), gy.ravel()
    return float(np.vdot(gxf, gxf)) / n, float(np.vdot(gyf, gyf)) / n, float(np.vdot(gxf, gyf)) / n


def _directional_energy(t: tuple[float, float, float]) -> np.ndarray:
    exx, eyy, exy = t
    return _COS2 * exx + _SIN2 * eyy + _CS2 * exy + 1e-6


def _coherence(t: tuple[float, float, float]) -> tuple[float, float]:
    exx, eyy, exy = t
    total = exx + eyy + 1e-9
    return (exx - eyy) / total, 2.0 * exy / total


def face_window(rgb: np.ndarray, landmarks: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Grey float32 window on the eyes-nose-mouth region, rotation-normalised, at native pixel density.

    Returns (window, density, face_px): density = window px per *original* px (= scale), face_px = the
    width of the 112-px aligned face in original px. The window is moved (not shrunk) to stay inside the
    image, so a face cut by the border is judged on real pixels, not on a mirrored edge.
    """
    matrix = similarity_transform(np.asarray(landmarks, np.float64), ARCFACE_TEMPLATE)
    k = math.hypot(matrix[0, 0], matrix[1, 0])  # template px per image px
    if not np.isfinite(k) or k <= 1e-6:
        raise ValueError("degenerate landmarks")
    rotation = matrix[:, :2] / k
    inverse = cv2.invertAffineTransform(matrix)
    center = inverse[:, :2] @ REGION_CENTER + inverse[:, 2]

    img_h, img_w = rgb.shape[:2]
    side = min(max(round(REGION_TEMPLATE_PX / k), WINDOW_MIN), WINDOW_CAP)
    # Half extent of the rotated window's bounding box in the image.
    c, s = abs(rotation[0, 0]), abs(rotation[0, 1])
    half = side / 2.0 * (c + s)
    for axis, size in ((0, img_w), (1, img_h)):
        if 2 * half >= size - 1:
            center[axis] = (size - 1) / 2.0
        else:
            center[axis] = min(max(center[axis], half), size - 1 - half)

    x0, y0 = max(int(center[0] - half) - 3, 0), max(int(center[1] - half) - 3, 0)
    x1, y1 = min(math.ceil(center[0] + half) + 4, img_w), min(math.ceil(center[1] + half) + 4, img_h)
    sub = rgb[y0:y1, x0:x1]
    grey = cv2.cvtColor(sub, cv2.COLOR_RGB2GRAY) if sub.ndim == 3 else sub
    # Window px = rotation @ (image px - center) + side/2, in the coordinates of `sub`.
    offset = np.array([side / 2.0, side / 2.0]) - rotation @ (center - np.array([x0, y0], np.float64))
    warp = np.hstack([rotation, offset[:, None]])
    window = cv2.warpAffine(grey, warp, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return window.astype(np.float32), float(scale), float(112.0 / k / scale)


def _edge_width(mag0: np.ndarray, bx: np.ndarray, by: np.ndarray, reblur_sigma: float) -> float:
    """log of the widest per-orientation blur estimate (window px) of the strongest edges."""
    ax, ay = np.abs(bx), np.abs(by)
    mag = np.sqrt(bx * bx + by * by)
    horizontal = ay < _TAN_22_5 * ax  # gradient along x
    vertical = ax < _TAN_22_5 * ay
    diagonal = ~(horizontal | vertical)
    same_sign = (bx * by) > 0
    bins = (horizontal, diagonal & same_sign, vertical, diagonal & ~same_sign)
    m = np.pad(mag, 1, mode="edge")
    centre = m[1:-1, 1:-1]
    neighbours = (
        (m[1:-1, :-2], m[1:-1, 2:]),
        (m[:-2, :-2], m[2:, 2:]),
        (m[:-2, 1:-1], m[2:, 1:-1]),
        (m[:-2, 2:], m[2:, :-2]),
    )
    inner = np.zeros(mag.shape, bool)
    inner[2:-2, 2:-2] = True
    strong = inner & (mag > _EDGE_FLOOR)
    widths = []
    for sel, (a, b) in zip(bins, neighbours, strict=True):
        keep = sel & strong & (centre >= a) & (centre > b)
        values = mag[keep]
        if values.size < 8:
            continue
        top = max(int(values.size * _EDGE_TOP), 4)
        threshold = np.partition(values, values.size - top)[values.size - top]
        chosen = keep & (mag >= threshold)
        ratio = float(mag0[chosen].sum()) / max(float(mag[chosen].sum()), 1e-6)
        widths.append(reblur_sigma / math.sqrt(max(ratio * ratio - 1.0, 1e-3)))
    if not widths:
        return math.log(reblur_sigma / math.sqrt(1e-3))  # no edge at all: as blurred as we can say
    return math.log(max(widths))


@lru_cache(maxsize=64)
def _cepstrum_support(height: int, width: int, rmin: float) -> tuple[np.ndarray, np.ndarray]:
    hann = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    yy, xx = np.mgrid[:height, :width]
    # Cepstrum is unshifted: distances wrap around.
    dy = np.minimum(yy, height - yy)
    dx = np.minimum(xx, width - xx)
    r = np.hypot(dy, dx)
    annulus = (r >= rmin) & (r <= min(height, width) / 3.0)
    return hann, annulus


def _cepstral_dip(window: np.ndarray, density: float) -> float:
    h, w = window.shape
    rmin = max(4.0, round(_CEPSTRUM_RMIN_ORIGINAL_PX * density))
    hann, annulus = _cepstrum_support(h, w, float(rmin))
    if not annulus.any():
        return 0.0
    x = (window - float(window.mean())) * hann
    spectrum = cv2.dft(x, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = spectrum[..., 0] ** 2 + spectrum[..., 1] ** 2
    log_power = np.log(power + 1e-3 * float(power.mean()) + 1e-12)
    # The log power spectrum is real and even, so its transform is real: keep the real part.
    cepstrum = cv2.dft(log_power, flags=cv2.DFT_COMPLEX_OUTPUT)[..., 0]
    values = cepstrum[annulus]
    mean, std = float(values.mean()), float(values.std()) + 1e-12
    return (mean - float(values.min())) / std


def raw_features(window: np.ndarray, density: float) -> dict[str, float]:
    """Every statistic the model uses, before the fitted coherence centring (see module docstring)."""
    gx, gy = _gradients(window)
    t0 = _tensor(gx, gy)
    e0 = _directional_energy(t0)
    out: dict[str, float] = {}
    blurred_grads = {}
    for sigma in _REBLUR_SIGMAS:
        bx, by = _gradients(cv2.GaussianBlur(window, (0, 0), sigma, borderType=cv2.BORDER_REFLECT))
        blurred_grads[sigma] = (bx, by)
        ratio = np.log(e0 / _directional_energy(_tensor(bx, by)))
        out[f"log_rmin_{sigma:g}"] = math.log(max(float(ratio.min()), 1e-4))
        out[f"log_rmax_{sigma:g}"] = math.log(max(float(ratio.max()), 1e-4))
    bx, by = blurred_grads[1.0]
    mag0 = np.sqrt(gx * gx + gy * gy)
    out["edge_width"] = _edge_width(mag0, bx, by, 1.0) - math.log(density)
    out["log_cepstral_dip"] = math.log(max(_cepstral_dip(window, density), 1.0))
    for sigma in (1.0, 2.0):
        bx, by = blurred_grads[sigma]
        cx, cy = _coherence(_tensor(gx - bx, gy - by))
        out[f"coherence_x_{sigma:g}"] = cx
        out[f"coherence_y_{sigma:g}"] = cy
    out["log_density"] = math.log(density)
    return out


def feature_vector(raw: dict[str, float], coefficients: dict) -> np.ndarray:
    """Raw statistics -> the model's features (order: FEATURE_NAMES), using the fitted coherence centre."""
    centres = coefficients["coherence_centre"]
    spreads = coefficients["coherence_spread"]
    values = dict(raw)
    for key in ("1", "2"):
        cx0, cy0 = centres[key]
        sx, sy = spreads[key]
        distance = math.hypot((raw[f"coherence_x_{key}"] - cx0) / sx, (raw[f"coherence_y_{key}"] - cy0) / sy)
        values[f"coherence_excess_{key}"] = max(0.0, distance - COHERENCE_KNOT)
        anisotropy = raw[f"log_rmax_{key}"] - raw[f"log_rmin_{key}"]
        values[f"anisotropy_excess_{key}"] = max(0.0, anisotropy - ANISOTROPY_KNOT)
    values["cepstral_excess"] = max(0.0, raw["log_cepstral_dip"] - CEPSTRAL_KNOT)
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)


def noisy_or_logit(z_isotropic: float, z_motion: float) -> float:
    """logit(1 - (1 - p1)(1 - p2)) from the two experts' logits: odds = o1 + o2 + o1 * o2."""
    a, b = max(z_isotropic, z_motion), min(z_isotropic, z_motion)
    # log(e^a + e^b + e^(a + b)), without overflow.
    if b > 0:
        return a + b + math.log1p(math.exp(-a) + math.exp(-b))
    return a + math.log1p(math.exp(b - a) + math.exp(b))


class SharpnessClassifier:
    """P(blurry) of a detected face; ``is_sharp = blur_probability(...) < threshold``."""

    license = "MIT (faceauth's own calibrated classifier)"

    model_id = MODEL_ID

    def __init__(self, coefficients: dict | None = None) -> None:
        coefficients = coefficients if coefficients is not None else DEFAULT_COEFFICIENTS
        if not coefficients:
            raise ValueError("no calibrated coefficients: run python -m bench.calibrate_blur --write")
        self.coefficients = coefficients
        self.feature_names = FEATURE_NAMES
        self.model_id = str(coefficients.get("model_id", MODEL_ID))
        self._experts = []
        for name, features in (("isotropic", ISOTROPIC_FEATURES), ("motion", MOTION_FEATURES)):
            expert = coefficients[name]
            if list(expert["features"]) != list(features):
                raise ValueError(f"coefficients for {name} expect features {expert['features']}, not {features}")
            index = np.array([FEATURE_NAMES.index(f) for f in features])
            self._experts.append(
                (
                    index,
                    np.asarray(expert["mean"], np.float64),
                    np.asarray(expert["std"], np.float64),
                    np.asarray(expert["weights"], np.float64),
                    float(expert["intercept"]),
                )
            )

    def features(
        self, rgb: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None, scale: float = 1.0
    ) -> np.ndarray:
        """The model's feature vector (order: ``FEATURE_NAMES``) for one face of a decoded image.

        ``landmarks`` (5, 2) and ``box`` are in the coordinates of ``rgb``; ``scale`` is the decoded px per
        original px (``DecodedImage.scale``). The box is only a fallback for unusable landmarks.
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        landmarks = np.asarray(landmarks, np.float64).reshape(5, 2)
        try:
            window, density, _ = face_window(rgb, landmarks, scale)
        except (ValueError, np.linalg.LinAlgError):
            if box is None:
                raise
            window, density, _ = face_window(rgb, _landmarks_from_box(np.asarray(box, np.float64)), scale)
        return feature_vector(raw_features(window, density), self.coefficients)

    def expert_logits(self, features: np.ndarray) -> tuple[float, float]:
        """(isotropic-blur logit, motion-blur logit)."""
        features = np.asarray(features, np.float64)
        out = []
        for index, mean, std, weights, intercept in self._experts:
            out.append(float(((features[index] - mean) / std) @ weights + intercept))
        return out[0], out[1]

    def logit(self, features: np.ndarray) -> float:
        return noisy_or_logit(*self.expert_logits(features))

    def probability_from_features(self, features: np.ndarray) -> float:
        z = self.logit(features)
        if z >= 0:
            return float(1.0 / (1.0 + math.exp(-z)))
        e = math.exp(z)
        return float(e / (1.0 + e))

    def blur_probability(
        self, rgb: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None, scale: float = 1.0
    ) -> float:
        """P(blurry) in [0, 1] for the face with these landmarks (see ``features`` for the arguments)."""
        return self.probability_from_features(self.features(rgb, landmarks, box, scale))


def _landmarks_from_box(box: np.ndarray) -> np.ndarray:
    """The 5 template points placed in a detector box (a frontal, upright guess)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = max(x2 - x1, 2.0), max(y2 - y1, 2.0)
    return np.column_stack([x1 + ARCFACE_TEMPLATE[:, 0] / 112.0 * w, y1 + ARCFACE_TEMPLATE[:, 1] / 112.0 * h])
