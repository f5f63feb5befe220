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
