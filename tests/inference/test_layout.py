"""The serving path never imports the offline tools (quantise, convert, FLOPs): they stay out of the service."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SERVE_ONE_PHOTO = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from fastapi.testclient import TestClient

    from faceauth.config import MLSettings
    from faceauth.inference.app import create_app

    model_dir, spoof_model, photo = (Path(arg) for arg in sys.argv[1:])
    settings = MLSettings(_env_file=None, model_dir=model_dir, spoof_local_model_path=spoof_model, auto_fetch=False)
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/analyze", "/v1/detect", "/v1/analyze?aligned=true"):
            response = client.post(path, content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
        assert client.get("/readyz").json()["status"] == "ok"
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_serving_never_imports_the_offline_tools(tmp_path: Path, spoof_model_path: Path, faces_dir: Path):
    # A fresh interpreter: this test session has imported the tools for their own tests.
    result = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_PHOTO, str(tmp_path), str(spoof_model_path), str(faces_dir / "img1.jpg")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "faceauth.inference.app" in modules and "faceauth.inference.checks.nsfw" in modules
    assert [m for m in modules if m.startswith("faceauth.inference.tools")] == []
    # Nor the downloader when there is nothing to fetch, nor torch without a `.pth` to serve.
    assert "faceauth.inference.artefacts.fetch" not in modules and "torch" not in modules
