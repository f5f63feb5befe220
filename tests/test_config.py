from __future__ import annotations

import pytest

from faceauth.cli import main
from faceauth.config import SettingsError, load_ml_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ML_SERVICE_SPOOF_THRESHOLD", "1.5"),
        ("ML_SERVICE_BLUR_THRESHOLD", "-0.1"),
        ("ML_SERVICE_ML_DEVICE", "gpu0"),
        ("ML_SERVICE_PORT", "99999"),
        ("ML_SERVICE_MULTIPLE_FACES_POLICY", "first"),
    ],
)
def test_invalid_setting_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_ml_settings()
    assert variable in str(info.value)


def test_valid_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ML_SERVICE_ML_DEVICE", "cuda:1")
    monkeypatch.setenv("ML_SERVICE_NSFW_THRESHOLD", "0.7")
    settings = load_ml_settings()
    assert settings.ml_device == "cuda:1" and settings.nsfw_threshold == 0.7


def test_cli_refuses_to_start_with_an_invalid_setting(monkeypatch, capsys):
    monkeypatch.setenv("ML_SERVICE_NSFW_THRESHOLD", "2")
    assert main(["ml"]) == 2
    assert "ML_SERVICE_NSFW_THRESHOLD" in capsys.readouterr().err


def test_models_list_and_verify_on_an_empty_model_dir(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ML_SERVICE_MODEL_DIR", str(tmp_path))
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("buffalo_s", "buffalo_l", "antelopev2", "auraface", "minifasnet_v2"):
        assert name in listing
    assert main(["models", "verify"]) == 0
    report = capsys.readouterr().out
    assert report.count("missing") == 5


def test_models_verify_flags_a_corrupted_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ML_SERVICE_MODEL_DIR", str(tmp_path))
    (tmp_path / "minifasnet_v2").mkdir()
    (tmp_path / "minifasnet_v2" / "minifasnet_v2_80x80.onnx").write_bytes(b"corrupted")
    assert main(["models", "verify", "minifasnet_v2"]) == 1
    assert "mismatch" in capsys.readouterr().out


def test_env_example_names_only_real_settings():
    """Every ML_SERVICE_* variable documented in .env.example is a setting (a typo there would be ignored)."""
    from pathlib import Path

    from faceauth.config import MLSettings

    example = Path(__file__).resolve().parents[1] / ".env.example"
    names = [
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in example.read_text().splitlines()
        if line.lstrip("# ").startswith("ML_SERVICE_") and "=" in line
    ]
    assert len(names) > 20
    fields = {f"ML_SERVICE_{name.upper()}" for name in MLSettings.model_fields}
    assert sorted(set(names) - fields) == []
    assert sorted(fields - set(names)) == []  # and every setting is documented there
