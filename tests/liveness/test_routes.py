"""Active liveness sessions, judged on challenge sequences built from real photos of one person.

The photos are the labelled deepface set: the person with the most usable photos, whose head poses differ
between photos. Each photo's pose and face size are measured through the real ML service here, and a sequence
for a session's random challenge is put together from them; a challenge no sequence of this person can answer is
skipped by starting another session (the challenge is the server's, unpredictable, as in production).
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image

from faceauth.config import APISettings
from tests.apitest import enrol

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


def _measure(ml_service, name: str, image: bytes) -> Shot:
    headers = {"Authorization": f"Bearer {ml_service.token}", "Content-Type": "application/octet-stream"}
    body = httpx.post(f"{ml_service.url}/v1/analyze", content=image, headers=headers, timeout=60).json()
    face = body["face"]
    return Shot(name, image, face["pose"]["yaw"], face["pose"]["pitch"], face["area_fraction"] ** 0.5)


@pytest.fixture(scope="session")
def shots(ml_service, people, photos) -> list[Shot]:
    person = max(people, key=lambda p: len(p.photos))
    measured = [_measure(ml_service, name, photos(name)) for name in person.photos]
    assert len(measured) >= 5, "need a person with at least 5 usable photos"
    return measured


def _done(step: str, start: Shot, shot: Shot, margin: float) -> bool:
    if step == "turn_left":
        return shot.yaw - start.yaw >= DEFAULTS.liveness_yaw_degrees + margin
    if step == "turn_right":
        return start.yaw - shot.yaw >= DEFAULTS.liveness_yaw_degrees + margin
    if step == "look_up":
        return start.pitch - shot.pitch >= DEFAULTS.liveness_pitch_degrees + margin
    return shot.size / start.size >= DEFAULTS.liveness_closer_ratio + 0.05 * margin


def _sequence(steps: list[str], shots: list[Shot]) -> list[Shot] | None:
    """A start photo, then for each step a photo (none used twice) where it is done relative to the last one."""

    def extend(done: list[Shot], left: list[str]) -> list[Shot] | None:
        if not left:
            return done
        for shot in shots:
            if shot not in done and _done(left[0], done[-1], shot, MARGIN):
                found = extend([*done, shot], left[1:])
                if found:
                    return found
        return None

    for first in shots:
        found = extend([first], steps)
        if found:
            return found
    return None


def _follows(steps: list[str], sequence: list[Shot]) -> bool:
    """Would the server's in-order walk (no margin) see the steps in this sequence?"""
    anchor, i = 0, 1
    for step in steps:
        while i < len(sequence) and not _done(step, sequence[anchor], sequence[i], -0.0):
            i += 1
        if i == len(sequence):
            return False
        anchor, i = i, i + 1
    return True


def _start(api, **data) -> dict:
    r = api.post("/v1/liveness/sessions", data={"tenant": "acme", **data})
    assert r.status_code == 200, r.text
    return r.json()


def _steps(session: dict) -> list[str]:
    return [s["step"] for s in session["challenge"]]


def _answerable(api, shots: list[Shot], **data) -> tuple[dict, list[Shot]]:
    """A session whose challenge this person's photos can answer."""
    for _ in range(40):
        session = _start(api, **data)
        sequence = _sequence(_steps(session), shots)
        if sequence:
            return session, sequence
    pytest.fail("no challenge in 40 sessions could be answered with this person's photos")


def _send(api, session: dict, images: list[bytes], *, final: bool = True, start_ms: float | None = None, **extra):
    start_ms = time.time() * 1000 - 50 * len(images) if start_ms is None else start_ms
    files = [("frames", (f"f{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
    data = {"tenant": "acme", "timestamps": [str(start_ms + 40 * i) for i in range(len(images))], "final": final}
    return api.post(f"/v1/liveness/sessions/{session['session_id']}/frames", data={**data, **extra}, files=files)


def _decided(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decided"] is True and body["requestId"]
    return body


def test_a_session_gives_a_random_short_challenge_that_expires(api):
    session = _start(api)
    assert session["session_id"].startswith("ls_") and session["expires_in_seconds"] == 60
    assert 2 <= len(session["challenge"]) <= 3 and all(s["prompt"] for s in session["challenge"])
    assert len(set(_steps(session))) == len(session["challenge"])
    drawn = {tuple(_steps(_start(api))) for _ in range(12)}
    assert len(drawn) > 3  # not one fixed sequence


def test_the_correct_sequence_of_one_person_is_live_and_the_session_then_used(api, shots):
    session, sequence = _answerable(api, shots)
    body = _decided(_send(api, session, [s.image for s in sequence]))
    assert body["live"] is True and body["reasons"] == [], (body, [s.name for s in sequence])
    assert [s["step"] for s in body["steps"]] == _steps(session) and all(s["observed"] for s in body["steps"])
    assert 0 < body["score"] <= 1 and body["verification"] is None
    again = _decided(_send(api, session, [s.image for s in sequence]))
    assert again["live"] is False and again["reasons"] == ["session_used"]


def test_the_steps_in_another_order_fail_as_wrong_step_order(api, shots):
    for _ in range(40):
        session = _start(api)
        steps = _steps(session)
        reordered = [steps[1], steps[0], *steps[2:]]
        sequence = _sequence(reordered, shots)
        if sequence and not _follows(steps, sequence):
            break
    else:
        pytest.fail("no reordered sequence found")
    body = _decided(_send(api, session, [s.image for s in sequence]))
    assert body["live"] is False and "wrong_step_order" in body["reasons"], body
    assert not all(s["observed"] for s in body["steps"])


def test_one_photo_repeated_is_static_and_no_step_is_seen(api, shots):
    session = _start(api)
    body = _decided(_send(api, session, [shots[0].image] * 4))
    assert body["live"] is False and {"static_frames", "step_not_observed"} <= set(body["reasons"]), body
    # The same still re-encoded at another JPEG quality: not byte-identical, still a still.
    session = _start(api)
    still = Image.open(io.BytesIO(shots[0].image)).convert("RGB")
    copies = []
    for quality in (95, 90, 85, 80):
        out = io.BytesIO()
        still.save(out, "JPEG", quality=quality)
        copies.append(out.getvalue())
    body = _decided(_send(api, session, copies))
    assert body["live"] is False and "static_frames" in body["reasons"], body


def test_another_person_in_the_middle_is_identity_changed(api, shots, people, photos):
    session, sequence = _answerable(api, shots)
    stranger = next(p for p in people if shots[0].name not in p.photos)
    images = [s.image for s in sequence]
    images.insert(len(images) // 2 + 1, photos(stranger.photos[0]))
    body = _decided(_send(api, session, images))
    assert body["live"] is False and "identity_changed" in body["reasons"], body


def test_a_printed_photo_moved_in_front_of_the_camera_is_spoof_suspected(api, photos):
    """The printed-photo sample, tilted and shifted as a hand would hold a print: each frame differs."""
    printed = Image.open(io.BytesIO(photos.antispoof("spoof_print_1.jpg"))).convert("RGB")
    frames = []
    for angle, zoom in ((0, 1.0), (8, 1.1), (-8, 1.2), (4, 1.35)):
        w, h = printed.size
        turned = printed.rotate(angle, resample=Image.BICUBIC, expand=False)
        cw, ch = int(w / zoom), int(h / zoom)
        crop = turned.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2))
        out = io.BytesIO()
        crop.save(out, "JPEG", quality=92)
        frames.append(out.getvalue())
    body = _decided(_send(api, _start(api), frames))
    assert body["live"] is False and "spoof_suspected" in body["reasons"], body


def test_an_expired_session_answers_session_expired(make_api, shots):
    with make_api(liveness_session_seconds=1) as api:
        session, sequence = _answerable(api, shots)
        time.sleep(1.2)
        body = _decided(_send(api, session, [s.image for s in sequence]))
        assert body["live"] is False and body["reasons"] == ["session_expired"]


def test_frames_captured_over_more_time_than_the_session_existed_are_implausible(api, shots):
    session, sequence = _answerable(api, shots)
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={"tenant": "acme", "timestamps": [str(i * 20_000) for i in range(len(sequence))]},
        files=[("frames", (f"f{i}.jpg", s.image)) for i, s in enumerate(sequence)],
    )
    assert "implausible_timestamps" in _decided(r)["reasons"]


def test_frames_in_several_calls_and_a_session_that_survives_a_restart(make_api, tmp_path, shots):
    data = tmp_path / "data"
    with make_api(data) as api:
        session, sequence = _answerable(api, shots)
        first = _send(api, session, [sequence[0].image], final=False)
        assert first.status_code == 200 and first.json()["decided"] is False and first.json()["frames_received"] == 1
    with make_api(data) as api:  # a new process on the same stores
        rest = [s.image for s in sequence[1:]]
        body = _decided(_send(api, session, rest, start_ms=time.time() * 1000))
        assert body["live"] is True and body["frames_received"] == len(sequence), body


def test_two_concurrent_final_submissions_claim_the_session_once(api, shots):
    session, sequence = _answerable(api, shots)
    answers = []

    def submit() -> None:
        answers.append(_send(api, session, [s.image for s in sequence]).json())

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["reasons"] == ["session_used"] for a in answers) == [False, True, True], answers


def test_liveness_with_verification_against_a_subject_and_a_reference(api, shots, people, photos):
    assert enrol(api, "acme", "self", shots[-1].image).status_code == 200
    stranger = next(p for p in people if shots[0].name not in p.photos)
    assert enrol(api, "acme", "stranger", photos(stranger.enrol_photo)).status_code == 200

    session, sequence = _answerable(api, shots, subject_id="self")
    body = _decided(_send(api, session, [s.image for s in sequence]))
    v = body["verification"]
    assert v["type"] == "subject" and v["id"] == "self" and v["matched"] is True and v["face_id"] == "self"
    assert v["score"] >= v["threshold"]

    session, sequence = _answerable(api, shots, reference_id="stranger")
    v = _decided(_send(api, session, [s.image for s in sequence]))["verification"]
    assert v["type"] == "face" and v["matched"] is False and v["score"] < v["threshold"]


def test_bad_liveness_input_gets_a_clear_4xx(api, shots):
    def code(r, status):
        assert r.status_code == status, r.text
        assert r.json()["requestId"]
        return r.json()["error"]["code"]

    assert code(api.post("/v1/liveness/sessions", data={"tenant": "acme", "subject_id": "ghost"}), 404) == (
        "subject_not_found"
    )
    assert code(api.post("/v1/liveness/sessions", data={"tenant": "acme", "reference_id": "ghost"}), 404) == (
        "face_not_found"
    )
    both = {"tenant": "acme", "subject_id": "a", "reference_id": "b"}
    assert code(api.post("/v1/liveness/sessions", data=both), 422) == "invalid_reference"
    session = _start(api)
    assert code(_send(api, session, [shots[0].image, shots[1].image]), 422) == "invalid_frame_count"
    assert code(_send(api, session, [shots[0].image] * 13), 422) == "invalid_frame_count"
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={"tenant": "acme", "timestamps": ["1"]},
        files=[("frames", ("a.jpg", shots[0].image)), ("frames", ("b.jpg", shots[1].image))],
    )
    assert code(r, 422) == "timestamps_mismatch"
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={"tenant": "acme", "timestamps": ["1", "2", "3"]},
        files=[("frames", (f"{i}.jpg", b"not an image")) for i in range(3)],
    )
    assert r.status_code in (400, 415, 422) and r.json()["error"]["details"]["field"].startswith("frames[")
    unknown = {"session_id": "ls_" + "0" * 32}
    assert code(_send(api, unknown, [shots[0].image] * 3), 404) == "session_not_found"
    assert code(_send(api, {"session_id": "nope"}, [shots[0].image] * 3), 422) == "validation_error"
    # Another tenant's session is not found (an admin naming the wrong tenant sees nothing either).
    r = _send(api, session, [s.image for s in shots[:3]], tenant="other")
    assert code(r, 404) == "session_not_found"
    # The session was not spent by any of these.
    assert _send(api, session, [s.image for s in shots[:3]]).json()["decided"] is True


def test_the_reference_client_is_served_without_a_key(api):
    del api.headers["X-Api-Key"]
    r = api.get("/liveness.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "export async function runLiveness" in r.text and "/v1/liveness/sessions" in r.text


def test_frames_as_base64_are_accepted(api, shots):
    import base64

    session, sequence = _answerable(api, shots)
    now = time.time() * 1000
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={
            "tenant": "acme",
            "frames_b64": [base64.b64encode(s.image).decode() for s in sequence],
            "timestamps": [str(now + 40 * i) for i in range(len(sequence))],
        },
    )
    assert _decided(r)["live"] is True


def test_shots_are_really_different_poses(shots):
    """The material itself: the chosen person's photos span the challenge's movements."""
    yaws = np.array([s.yaw for s in shots])
    assert yaws.max() - yaws.min() >= DEFAULTS.liveness_yaw_degrees + MARGIN
