from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceauth.config import MLSettings
from faceauth.inference.app import create_app, load_service
from faceauth.inference.pipeline import Pipeline
from faceauth.inference.service import InferenceService
from tests.conftest import require_module


def ml_settings(spoof_model_path: Path, tmp_model_dir: Path, **overrides) -> MLSettings:
    values = {
        "spoof_local_model_path": spoof_model_path,
        "model_dir": tmp_model_dir,
        "auto_fetch": False,
        "workers": 2,
        # MiniFASNetV2 alone, whatever the environment says: the fused check has tests of its own (checks/).
        "spoof_fusion": False,
        **overrides,
    }
    return MLSettings(_env_file=None, **values)


@pytest.fixture(scope="session")
def settings(spoof_model_path: Path, tmp_path_factory) -> MLSettings:
    return ml_settings(spoof_model_path, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def service(settings: MLSettings) -> InferenceService:
    """The real models, loaded once for the whole session."""
    svc = load_service(settings)
    assert all(slot.state == "ready" for slot in svc.pipeline.models.slots.values()), {
        name: slot.error for name, slot in svc.pipeline.models.slots.items()
    }
    return svc


def derived_service(service: InferenceService, **overrides) -> tuple[MLSettings, InferenceService]:
    """The session's loaded models behind different settings (no reload: the checks keep their thresholds)."""
    settings = service.settings.model_copy(update=overrides)
    return settings, InferenceService(Pipeline(service.pipeline.models, settings), service.pool, settings)


@pytest.fixture(scope="session")
def client(settings: MLSettings, service: InferenceService):
    with TestClient(create_app(settings, service=service)) as c:
        yield c


# The optional torch extra: tests that take these skip without it (and fail on CI, which installs it).
@pytest.fixture(scope="module")
def torch():
    return require_module("torch")


@pytest.fixture(scope="module")
def onnx(torch):
    return require_module("onnx")
