"""The real command, the real server, real HTTP: what a user does after `./dev up`."""

from __future__ import annotations

import base64

import httpx


def test_cli_serves_analyze_over_http(ml_service, shared_dir):
    data = (shared_dir / "faces" / "antispoof" / "live_1.jpg").read_bytes()
    auth = {"Authorization": f"Bearer {ml_service.token}"}
    with httpx.Client(base_url=ml_service.url, timeout=30) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok"
        assert client.post("/v1/analyze", content=data).status_code == 401  # the internal token is required
        r = client.post("/v1/analyze", json={"image_b64": base64.b64encode(data).decode()}, headers=auth)
        assert r.status_code == 200
        body = r.json()
        assert body["passed"] is True and len(body["embedding"]) == 512
        assert r.headers["x-request-id"] == body["requestId"]
        assert client.get("/docs").status_code == 200
