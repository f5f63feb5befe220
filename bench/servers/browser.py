"""Headless Chromium for the console and kiosk: Debian's `chromium` (Playwright's own download is not used), with a
fake camera that shows a real photo (a .y4m video made from it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2


def chromium_path() -> str | None:
    """FACEAUTH_CHROMIUM, else `chromium` on PATH."""
    return os.environ.get("FACEAUTH_CHROMIUM") or shutil.which("chromium")


def camera_video(photo: Path, out: Path, *, max_side: int = 960, frames: int = 10) -> Path:
    """A still photo as a short Y4M (4:2:0) video Chromium loops as its fake camera, at the photo's own aspect
    ratio (no letterbox: a border around the picture looks like a printed photo to the anti-spoof check)."""
    image = cv2.imread(str(photo))
    if image is None:
        raise ValueError(f"not an image: {photo}")
    scale = min(1.0, max_side / max(image.shape[:2]))
    width, height = int(image.shape[1] * scale) // 2 * 2, int(image.shape[0] * scale) // 2 * 2
    frame = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    planes = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F5:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)
    return out


def chromium_args(video: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    ]
