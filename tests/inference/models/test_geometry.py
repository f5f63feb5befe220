from __future__ import annotations

import numpy as np
import pytest

from faceauth.inference.alignment import ARCFACE_TEMPLATE
from faceauth.inference.models.geometry import estimate_pose


@pytest.mark.parametrize("roll", [-40.0, 0.0, 25.0])
def test_pose_roll_follows_the_eye_line(roll):
    angle = np.deg2rad(roll)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    yaw, pitch, est_roll = estimate_pose(ARCFACE_TEMPLATE @ rot.T)
    assert est_roll == pytest.approx(roll, abs=1.0)
    assert abs(yaw) < 5 and abs(pitch) < 5


def test_pose_yaw_sign_follows_the_nose():
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] += 12  # nose moves towards the image's right
    yaw, _, _ = estimate_pose(turned)
    assert yaw > 15
