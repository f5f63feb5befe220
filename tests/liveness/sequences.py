"""Challenge sequences from real photos: one person's photos, their poses measured through the ML service, put
in an order that answers (or does not answer) a session's random challenge. Shared by the liveness and receipt
tests; the `shots` fixture is in tests/apitest.py."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

from faceauth.config import APISettings

DEFAULTS = APISettings()
# Photos are chosen with a margin over the server's thresholds, so a sequence is clearly right or clearly wrong.
MARGIN = 1.0


@dataclass(frozen=True)
class Shot:
    name: str
    image: bytes
    yaw: float
    pitch: float
    size: float  # sqrt(face area share)


def measure(ml_service, name: str, image: bytes) -> Shot:
    headers = {"Authorization": f"Bearer {ml_service.token}", "Content-Type": "application/octet-stream"}
    body = httpx.post(f"{ml_service.url}/v1/analyze", content=image, headers=headers, timeout=60).json()
    face = body["face"]
    return Shot(name, image, face["pose"]["yaw"], face["pose"]["pitch"], face["area_fraction"] ** 0.5)


def measure_person(ml_service, people, photos) -> list[Shot]:
    """The photos of the person with the most usable photos, measured."""
    person = max(people, key=lambda p: len(p.photos))
    measured = [measure(ml_service, name, photos(name)) for name in person.photos]
    assert len(measured) >= 5, "need a person with at least 5 usable photos"
    return measured


def step_done(step: str, start: Shot, shot: Shot, margin: float) -> bool:
    if step == "turn_left":
        return shot.yaw - start.yaw >= DEFAULTS.liveness_yaw_degrees + margin
    if step == "turn_right":
        return start.yaw - shot.yaw >= DEFAULTS.liveness_yaw_degrees + margin
    if step == "look_up":
        return start.pitch - shot.pitch >= DEFAULTS.liveness_pitch_degrees + margin
    return shot.size / start.size >= DEFAULTS.liveness_closer_ratio + 0.05 * margin


def sequence_for(steps: list[str], shots: list[Shot]) -> list[Shot] | None:
    """A start photo, then for each step a photo (none used twice) where it is done relative to the last one."""

    def extend(done: list[Shot], left: list[str]) -> list[Shot] | None:
        if not left:
            return done
        for shot in shots:
            if shot not in done and step_done(left[0], done[-1], shot, MARGIN):
                found = extend([*done, shot], left[1:])
                if found:
                    return found
        return None

    for first in shots:
        found = extend([first], steps)
        if found:
            return found
    return None


def follows(steps: list[str], sequence: list[Shot]) -> bool:
    """Would the server's in-order walk (no margin) see the steps in this sequence?"""
    anchor, i = 0, 1
    for step in steps:
        while i < len(sequence) and not step_done(step, sequence[anchor], sequence[i], -0.0):
            i += 1
        if i == len(sequence):
            return False
        anchor, i = i, i + 1
    return True


def start_session(api, **data) -> dict:
    r = api.post("/v1/liveness/sessions", data={"tenant": "acme", **data})
    assert r.status_code == 200, r.text
    return r.json()


def challenge_steps(session: dict) -> list[str]:
    return [s["step"] for s in session["challenge"]]


def answerable_session(api, shots: list[Shot], **data) -> tuple[dict, list[Shot]]:
    """A session whose challenge this person's photos can answer."""
    for _ in range(40):
        session = start_session(api, **data)
        sequence = sequence_for(challenge_steps(session), shots)
        if sequence:
            return session, sequence
    pytest.fail("no challenge in 40 sessions could be answered with this person's photos")


def send_frames(
    api,
    session: dict,
    images: list[bytes],
    *,
    final: bool = True,
    start_ms: float | None = None,
    headers_key: str | None = None,
    **extra,
):
    """The frames with capture times 40 ms apart; `headers_key`: an Idempotency-Key."""
    start_ms = time.time() * 1000 - 50 * len(images) if start_ms is None else start_ms
    files = [("frames", (f"f{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
    data = {"tenant": "acme", "timestamps": [str(start_ms + 40 * i) for i in range(len(images))], "final": final}
    headers = {"Idempotency-Key": headers_key} if headers_key else {}
    url = f"/v1/liveness/sessions/{session['session_id']}/frames"
    return api.post(url, data={**data, **extra}, files=files, headers=headers)


def decided(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decided"] is True and body["requestId"]
    return body
