from __future__ import annotations

import numpy as np
import pytest

from faceauth.inference.models.embedder import ARCFACE_TEMPLATE, align_face, similarity_transform
from faceauth.inference.models.geometry import estimate_pose


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(23.0), 2.5, np.array([40.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_align_face_puts_landmarks_on_the_template():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    # Landmarks of a face twice the template size, rotated 30 degrees, somewhere in the image.
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ (2 * rot).T + [120, 90]
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3)
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-6)


def test_batch_embedding_equals_one_by_one(service, photo_bytes):
    embedder = service.pipeline.models.require("embedder")
    detector = service.pipeline.models.require("detector")
    crops = []
    for name in ("img1.jpg", "img2.jpg", "img20.jpg"):
        image = service.pipeline.decode(photo_bytes(name))
        crops.append(align_face(image.rgb, detector.detect(image.rgb)[0].landmarks))
    together = embedder.embed_aligned(crops)
    alone = np.stack([embedder.embed_aligned([c])[0] for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)


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
