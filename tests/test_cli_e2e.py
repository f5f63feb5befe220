"""The real command, the real server, real HTTP: what a user does after `./dev up`."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ml_server(spoof_model_path, tmp_path_factory):
    port = _free_port()
    env = {
        **os.environ,
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
        "ML_SERVICE_MODEL_DIR": str(tmp_path_factory.mktemp("models")),
        "ML_SERVICE_AUTO_FETCH": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceauth.cli", "ml", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the ML service did not become ready in 60 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_serves_analyze_over_http(ml_server, shared_dir):
    data = (shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes()
    with httpx.Client(base_url=ml_server, timeout=30) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok"
        r = client.post("/v1/analyze", json={"image_b64": base64.b64encode(data).decode()})
        assert r.status_code == 200
        body = r.json()
        assert body["passed"] is True and len(body["embedding"]) == 512
        assert r.headers["x-request-id"] == body["requestId"]
        assert client.get("/docs").status_code == 200
