"""int8 copies of the face models: made from a few real photos, loadable, picked by the settings, close to fp32."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from faceauth import cli
from faceauth.config import MLSettings
from faceauth.inference.alignment import align_face
from faceauth.inference.artefacts.registry import int8_model_path
from faceauth.inference.modelset import ModelSet
from faceauth.inference.tools.flops import count_flops
from faceauth.inference.tools.quantize import quantize_pack, read_rgb

pytest.importorskip("onnx")

# Measured with the default options and 39 calibration photos: min 0.989 on the pair photos (docs/PERFORMANCE.md).
# Here only 8 calibration photos, so a little lower is allowed.
MIN_COSINE = 0.97


def _pair_photos(faces_dir: Path) -> set[str]:
    with open(faces_dir / "master.csv", newline="") as f:
        return {name for row in csv.DictReader(f) for name in (row["file_x"], row["file_y"])}


def _settings(model_dir: Path, spoof_model_path: Path, **overrides) -> MLSettings:
    values = {"model_dir": model_dir, "spoof_local_model_path": spoof_model_path, "auto_fetch": False}
    return MLSettings(_env_file=None, **{**values, **overrides})


@pytest.fixture(scope="module")
def int8_dir(faces_dir: Path, spoof_model_path: Path, tmp_path_factory) -> Path:
    """Both int8 models, calibrated on 8 photos that no labelled pair uses (the pairs' photos judge them)."""
    model_dir = tmp_path_factory.mktemp("int8-models")
    held_out = _pair_photos(faces_dir)
    calibration = [p for p in sorted(faces_dir.glob("*.jpg")) if p.name not in held_out][:8]
    written = quantize_pack(_settings(model_dir, spoof_model_path), calibration)
    assert set(written) == {"embedder", "detector"}
    return model_dir


@pytest.fixture(scope="module")
def model_sets(int8_dir: Path, spoof_model_path: Path) -> dict[str, ModelSet]:
    fp32 = ModelSet.load(_settings(int8_dir, spoof_model_path))
    int8 = ModelSet.load(_settings(int8_dir, spoof_model_path, embedder_precision="int8", detector_precision="int8"))
    for models in (fp32, int8):
        assert models.ready("detector", "embedder"), {n: s.error for n, s in models.slots.items()}
    return {"fp32": fp32, "int8": int8}


def test_the_loader_picks_the_int8_files_and_the_embedder_gets_its_own_model_id(model_sets, int8_dir):
    fp32, int8 = model_sets["fp32"], model_sets["int8"]
    for name in ("detector", "embedder"):
        source = Path(fp32.slots[name].path)
        assert int8.slots[name].path == str(int8_model_path(int8_dir, source))
        assert int8.slots[name].path.endswith(".int8.onnx")
    fp32_id, int8_id = fp32.slots["embedder"].model_id, int8.slots["embedder"].model_id
    assert fp32_id != int8_id
    assert int8_id.startswith("buffalo_s/w600k_mbf-int8@") and fp32_id.startswith("buffalo_s/w600k_mbf@")
    assert int8.require("embedder").model_id == int8_id  # what the service reports with each embedding


def test_int8_embeddings_agree_with_fp32_on_real_photos(model_sets, faces_dir):
    detector = model_sets["fp32"].require("detector")
    crops = []
    for name in sorted(_pair_photos(faces_dir))[:10]:
        rgb = read_rgb(faces_dir / name)
        crops.append(align_face(rgb, detector.detect(rgb)[0].landmarks))
    fp32 = model_sets["fp32"].require("embedder").embed_aligned(crops)
    int8 = model_sets["int8"].require("embedder").embed_aligned(crops)
    cosine = (fp32 * int8).sum(axis=1)
    print(f"\ncosine(fp32, int8) over {len(crops)} faces: min {cosine.min():.4f} mean {cosine.mean():.4f}")
    assert cosine.min() > MIN_COSINE


def test_the_int8_detector_finds_the_same_faces(model_sets, faces_dir):
    fp32, int8 = model_sets["fp32"].require("detector"), model_sets["int8"].require("detector")
    for name in sorted(_pair_photos(faces_dir))[:6]:
        rgb = read_rgb(faces_dir / name)
        a, b = fp32.detect(rgb, (320, 320))[0], int8.detect(rgb, (320, 320))[0]
        inter = np.maximum(0, np.minimum(a.box[2:], b.box[2:]) - np.maximum(a.box[:2], b.box[:2])).prod()
        iou = inter / (a.area + b.area - inter)
        eyes = np.linalg.norm(a.landmarks[0] - a.landmarks[1])
        shift = np.linalg.norm(a.landmarks - b.landmarks, axis=1).max()
        assert iou > 0.9 and shift < 0.15 * eyes, (name, iou, shift / eyes)


def test_flops_of_an_int8_model_equal_its_fp32_source(model_sets):
    for name, shape in (("embedder", (1, 3, 112, 112)), ("detector", (1, 3, 320, 320))):
        fp32 = count_flops(model_sets["fp32"].slots[name].path, shape).total
        assert count_flops(model_sets["int8"].slots[name].path, shape).total == fp32


def test_int8_chosen_but_not_made_leaves_the_slot_missing_with_a_hint(tmp_path, spoof_model_path):
    models = ModelSet.load(_settings(tmp_path, spoof_model_path, embedder_precision="int8"))
    slot = models.slots["embedder"]
    assert slot.state == "missing" and "faceauth models quantize" in slot.error
    assert models.ready("detector")  # the fp32 detector is unaffected


def test_the_models_quantize_command(faces_dir, tmp_path, monkeypatch, spoof_model_path, capsys):
    monkeypatch.setenv("ML_SERVICE_MODEL_DIR", str(tmp_path))
    args = ["models", "quantize", "--calibration-dir", str(faces_dir), "--max-photos", "3", "--models", "embedder"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "ML_SERVICE_EMBEDDER_PRECISION=int8" in out and "faceauth reembed" in out
    assert len(list((tmp_path / "int8").glob("w600k_mbf-*.int8.onnx"))) == 1
    assert cli.main(["models", "quantize", "--calibration-dir", str(tmp_path / "nowhere")]) == 1
