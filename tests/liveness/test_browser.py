"""The reference client (/liveness.js, through the demo page /liveness.html) in a real browser: headless
Chromium with a fake camera playing a still photo of a face. The client must create a session, show the prompts,
capture one frame plus two per step with increasing timestamps, and send them; the server's answer to a still is
a refusal (static_frames), which the page shows."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn

from bench.servers.process import free_port
from faceauth.api.app import create_app
from faceauth.auth.keys import KeyStore
from faceauth.liveness.repository import Session
from faceauth.storage.local import LocalObjectStore
from tests.apitest import api_settings
from tests.conftest import require


def _y4m(photo: bytes, path: Path, frames: int = 10) -> None:
    """A 640x480 Y4M video of the photo (Chromium's fake camera loops it)."""
    bgr = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    scale = min(640 / w, 480 / h)
    canvas = np.zeros((480, 640, 3), np.uint8)
    small = cv2.resize(bgr, (int(w * scale), int(h * scale)))
    y0, x0 = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    i420 = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes()
    with path.open("wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            out.write(b"FRAME\n" + i420)


@pytest.mark.slow
def test_the_reference_client_runs_a_session_in_a_real_browser(ml_service, tmp_path, people, photos):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "chromium is not installed")
    settings = api_settings(ml_service, tmp_path / "data")
    objects = LocalObjectStore(settings.resolved_local_store_dir)
    _, token = asyncio.run(_new_key(objects))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    video = tmp_path / "camera.y4m"
    _y4m(photos(people[0].enrol_photo), video)
    browser = None
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.started
        url = f"http://127.0.0.1:{port}/liveness.html#auto&tenant=acme&key={token}"
        browser = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--remote-debugging-port=0",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        session = _wait_for_used_session(objects, timeout_s=90)
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
    assert session is not None, "the browser never completed a session"
    assert len(session.frames) == 1 + 2 * len(session.challenge)  # the client's capture plan
    times = [f.timestamp_ms for f in session.frames]
    assert times == sorted(times) and times[-1] - times[0] > 1000 * len(session.challenge)
    assert all(f.face for f in session.frames)  # the camera's frames reached the server as photos


async def _new_key(objects: LocalObjectStore):
    await objects.open()
    return await KeyStore(objects).create("acme", "browser test")


def _wait_for_used_session(objects: LocalObjectStore, timeout_s: float) -> Session | None:
    async def poll() -> Session | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for key in await objects.list("_liveness/acme/"):
                session = Session.from_json((await objects.get(key)).data)
                if session.used_at_ms is not None:
                    return session
            await asyncio.sleep(0.5)
        return None

    return asyncio.run(poll())


def test_the_demo_page_is_served_without_a_key(api):
    del api.headers["X-Api-Key"]
    r = api.get("/liveness.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'import { runLiveness } from "./liveness.js"' in r.text
    assert json.dumps("auto") and "location.hash" in r.text
