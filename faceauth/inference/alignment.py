"""Face alignment to the ArcFace template: the 112x112 crop the embedder reads, and the template's landmark
positions that the blur window, the aligned-crop path and the quantiser's calibration inputs use too."""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112
# Where the eyes, nose tip and mouth corners of a frontal face sit in the 112x112 ArcFace crop.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src points onto dst (Umeyama, 1991).

    Returns the 2x3 matrix for cv2.warpAffine.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # a reflection is not a pose: flip the weakest axis instead
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / src_var) if src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face warped so its 5 landmarks land on the ArcFace template (scaled to `size`).

    A bilinear warp that shrinks a large face several times aliases (it samples, it does not average), so
    when the face is more than twice the crop's size its region is first reduced with area averaging. On
    the labelled pairs this lifts same-person similarity a little and changes nothing else.
    """
    template = ARCFACE_TEMPLATE * (size / ALIGNED_SIZE)
    matrix = similarity_transform(landmarks, template)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], float) @ inverse[:, :2].T + inverse[:, 2]
        height, width = rgb.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [width, height])
        if x1 > x0 and y1 > y0:
            factor = 2.0 * scale  # keep two source pixels per output pixel for the final bilinear warp
            region = cv2.resize(rgb[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            rgb = region
            landmarks = (np.asarray(landmarks, dtype=np.float64) - [x0, y0]) * factor
            matrix = similarity_transform(landmarks, template)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _square_padding(width: int, height: int) -> tuple[int, int, int]:
    """(side, left, top): the square a width x height crop is centred in."""
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


def crop_to_aligned(rgb: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """An already-cropped face as the embedder's input: centred on a black square, then resized to `size`.

    Padding (not stretching) keeps the face's proportions, as `align_face` does; black is the border
    `align_face` itself fills with. INTER_AREA averages when shrinking, bilinear when growing.
    """
    height, width = rgb.shape[:2]
    side, left, top = _square_padding(width, height)
    if side != width or side != height:
        rgb = cv2.copyMakeBorder(
            rgb, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
    if side == size:
        return np.ascontiguousarray(rgb)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interpolation)


def crop_template_landmarks(width: int, height: int) -> np.ndarray:
    """Where `crop_to_aligned` assumes the 5 landmarks of a width x height crop are (the ArcFace template)."""
    side, left, top = _square_padding(width, height)
    return ARCFACE_TEMPLATE * (side / ALIGNED_SIZE) - [left, top]
