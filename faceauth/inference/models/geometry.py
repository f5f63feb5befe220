"""Head pose and a per-face quality figure, from the detector's 5 landmarks alone (no extra model)."""

from __future__ import annotations

import math

import numpy as np

# In a frontal face the nose tip stands about 0.55 inter-ocular distances in front of the eye plane, and
# sits about halfway between the eye line and the mouth line (the ArcFace template gives 0.496).
_NOSE_DEPTH = 0.55
_FRONTAL_NOSE_RATIO = 0.5
# ArcFace's 112 px crop puts the eyes ~35 px apart; faces much smaller than that lose identity detail.
_GOOD_EYE_DISTANCE_PX = 35.0


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees; a coarse geometric estimate (about ±10°), good for gating, not AR.

    Positive yaw: the face turns towards the image's right; positive pitch: the face looks down.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    left_eye, right_eye, nose = lm[0], lm[1], lm[2]
    mouth = (lm[3] + lm[4]) / 2
    eye_vec = right_eye - left_eye
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # Undo roll so the eye line is horizontal, then read yaw and pitch from where the nose falls.
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    rot = np.array([[c, -s], [s, c]])
    eyes_mid = (left_eye + right_eye) / 2
    nose_r = rot @ (nose - eyes_mid)
    mouth_r = rot @ (mouth - eyes_mid)
    eye_dist = max(float(np.linalg.norm(eye_vec)), 1e-6)
    yaw = math.degrees(math.atan2(nose_r[0] / eye_dist, _NOSE_DEPTH))
    if mouth_r[1] > 1e-6:
        ratio = nose_r[1] / mouth_r[1]
        pitch = math.degrees(math.atan2(ratio - _FRONTAL_NOSE_RATIO, _NOSE_DEPTH))
    else:
        pitch = 0.0
    return yaw, pitch, roll


def face_quality(score: float, landmarks: np.ndarray, p_blur: float | None, scale: float = 1.0) -> float:
    """0..1: detector confidence x size x frontalness x sharpness. A ranking figure, documented in API.md."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_distance = float(np.linalg.norm(lm[1] - lm[0])) / max(scale, 1e-6)
    size = min(1.0, eye_distance / _GOOD_EYE_DISTANCE_PX)
    yaw, pitch, _ = estimate_pose(lm)
    frontal = max(0.0, math.cos(math.radians(yaw)) * math.cos(math.radians(pitch)))
    sharp = 1.0 if p_blur is None else 1.0 - p_blur
    return float(np.clip(score * size * frontal * sharp, 0.0, 1.0))
