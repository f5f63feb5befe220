"""The fused anti-spoof check: MiniFASNetV2 (2.7x crop) and MiniFASNetV1SE (4.0x crop) on the same decoded image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceauth.inference.checks.spoof import SpoofCheck
from faceauth.inference.checks.spoof_fusion import FusedSpoofCheck
from faceauth.inference.models.minifasnet import context_crop
from faceauth.inference.modelset import ModelSet
from faceauth.inference.pipeline import Pipeline
from tests.conftest import require
from tests.inference.conftest import ml_settings


@pytest.fixture(scope="module")
def v1se_path(shared_dir: Path) -> Path:
    path = shared_dir / "models" / "minifasnet_v1se_80x80.onnx"
    require(path.is_file(), f"MiniFASNetV1SE not found at {path}")
    return path


@pytest.fixture(scope="module")
def fused(spoof_model_path, v1se_path, tmp_path_factory) -> Pipeline:
    settings = ml_settings(
        spoof_model_path, tmp_path_factory.mktemp("models"), spoof_v1se_local_model_path=v1se_path, spoof_fusion=True
    )
    return Pipeline(ModelSet.load(settings), settings)


def test_the_fused_check_averages_both_models_on_their_own_crops(fused, shared_dir):
    check = fused.models.require("spoof")
    assert isinstance(check, FusedSpoofCheck) and check.threshold == 0.6
    slot = fused.models.slots["spoof"]
    assert "minifasnet_v2_80x80@" in slot.model_id and "+minifasnet_v1se_80x80@" in slot.model_id
    for name, spoof in (("live_1.jpg", False), ("spoof_print_1.jpg", True)):
        image = fused.decode((shared_dir / "faces" / "antispoof" / name).read_bytes())
        face = fused.models.require("detector").detect(image.rgb)[0]
        near, wide = check.model_input(image, face)
        assert np.array_equal(near, context_crop(image.rgb, face.box, 2.7))
        assert np.array_equal(wide, context_crop(image.rgb, face.box, 4.0))
        expected = (check.model.spoof_probability([near])[0] + check.second.spoof_probability([wide])[0]) / 2
        (fused_p,) = check.run([(near, wide)])
        assert fused_p == pytest.approx(float(expected), abs=1e-6)
        assert check.flags(fused_p) is spoof, (name, fused_p)
        # Through the whole pipeline too (its own working copy and detection, so not the same number).
        through = fused.analyze((shared_dir / "faces" / "antispoof" / name).read_bytes(), frozenset({"spoof"}))
        assert check.flags(through.probabilities["spoof"]) is spoof


def test_the_wider_crop_shows_more_than_the_near_one_where_the_photo_has_room(fused, faces_dir):
    check = fused.models.require("spoof")
    differing = 0
    for path in sorted(faces_dir.glob("*.jpg")):
        image = fused.decode(path.read_bytes())
        faces = fused.models.require("detector").detect(image.rgb)
        if faces:
            near, wide = check.model_input(image, faces[0])
            differing += not np.array_equal(near, wide)
    assert differing >= 5  # 10 of the 64 photos with a face; in close-ups both crops are the whole photo


def test_fusion_off_or_without_the_second_file_is_v2_alone(spoof_model_path, v1se_path, tmp_path):
    off = ModelSet.load(
        ml_settings(spoof_model_path, tmp_path, spoof_v1se_local_model_path=v1se_path, spoof_fusion=False)
    )
    assert type(off.require("spoof")) is SpoofCheck
    unset = ModelSet.load(ml_settings(spoof_model_path, tmp_path, spoof_v1se_local_model_path=None))
    assert type(unset.require("spoof")) is SpoofCheck


def test_a_missing_second_file_fails_the_spoof_slot_with_its_setting_named(spoof_model_path, tmp_path):
    models = ModelSet.load(
        ml_settings(spoof_model_path, tmp_path, spoof_v1se_local_model_path=tmp_path / "nope.onnx", spoof_fusion=True)
    )
    slot = models.slots["spoof"]
    assert slot.state == "missing" and "ML_SERVICE_SPOOF_V1SE_LOCAL_MODEL_PATH" in slot.error
    assert models.ready("detector", "embedder")  # only the spoof slot is affected
