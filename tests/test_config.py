from __future__ import annotations

import pytest

from faceauth.cli import main
from faceauth.config import SettingsError, load_api_settings, load_ml_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ML_SERVICE_SPOOF_THRESHOLD", "1.5"),
        ("ML_SERVICE_BLUR_THRESHOLD", "-0.1"),
        ("ML_SERVICE_ML_DEVICE", "gpu0"),
        ("ML_SERVICE_PORT", "99999"),
        ("ML_SERVICE_MULTIPLE_FACES_POLICY", "first"),
        ("FACEAUTH_MILVUS_SEARCH_THRESHOLD", "1.5"),
        ("FACEAUTH_OBJECT_STORE", "ftp"),
        ("FACEAUTH_MILVUS_INDEX_TYPE", "ANNOY"),
        ("FACEAUTH_SEARCH_DEFAULT_TOP_K", "500"),
        ("FACEAUTH_MILVUS_COLLECTION", "bad-name"),
    ],
)
def test_invalid_setting_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    load = load_ml_settings if variable.startswith("ML_SERVICE_") else load_api_settings
    with pytest.raises(SettingsError) as info:
        load()
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


@pytest.mark.parametrize(("prefix", "settings_class"), [("ML_SERVICE_", "MLSettings"), ("FACEAUTH_", "APISettings")])
def test_env_example_names_exactly_the_real_settings(prefix, settings_class):
    """Every variable documented in .env.example is a setting (a typo there would be ignored), and vice versa."""
    from pathlib import Path

    import faceauth.config

    example = Path(__file__).resolve().parents[1] / ".env.example"
    names = [
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in example.read_text().splitlines()
        if line.lstrip("# ").startswith(prefix) and "=" in line
    ]
    assert len(names) > 20
    fields = {f"{prefix}{name.upper()}" for name in getattr(faceauth.config, settings_class).model_fields}
    fields |= {"FACEAUTH_MODEL_MIRROR"} & set(names)  # read by the model downloader, not a service setting
    assert sorted(set(names) - fields) == []
    assert sorted(fields - set(names)) == []  # and every setting is documented there


def test_milvus_uri_defaults_to_a_lite_file_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEAUTH_DATA_DIR", str(tmp_path))
    assert load_api_settings().resolved_milvus_uri == str(tmp_path / "milvus.db")
    monkeypatch.setenv("FACEAUTH_MILVUS_HOST", "milvus")
    assert load_api_settings().resolved_milvus_uri == "http://milvus:19530"
    monkeypatch.setenv("FACEAUTH_MILVUS_URI", "http://10.1.2.3:19531")
    assert load_api_settings().resolved_milvus_uri == "http://10.1.2.3:19531"


def test_cli_api_refuses_to_start_with_an_invalid_setting(monkeypatch, capsys):
    monkeypatch.setenv("FACEAUTH_MILVUS_SEARCH_THRESHOLD", "-1")
    assert main(["api"]) == 2
    assert "FACEAUTH_MILVUS_SEARCH_THRESHOLD" in capsys.readouterr().err
