"""The ArcFace alignment: the similarity transform and the warp onto the template."""

from __future__ import annotations

import numpy as np

from faceauth.inference.alignment import ARCFACE_TEMPLATE, align_face, similarity_transform


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
