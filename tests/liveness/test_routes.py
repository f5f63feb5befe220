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

import numpy as np
import pytest
from PIL import Image

from tests.apitest import enrol
from tests.liveness.sequences import (
    DEFAULTS,
    MARGIN,
    answerable_session,
    challenge_steps,
    decided,
    follows,
    send_frames,
    sequence_for,
    start_session,
)


def test_a_session_gives_a_random_short_challenge_that_expires(api):
    session = start_session(api)
    assert session["session_id"].startswith("ls_") and session["expires_in_seconds"] == 60
    assert 2 <= len(session["challenge"]) <= 3 and all(s["prompt"] for s in session["challenge"])
    assert len(set(challenge_steps(session))) == len(session["challenge"])
    drawn = {tuple(challenge_steps(start_session(api))) for _ in range(12)}
    assert len(drawn) > 3  # not one fixed sequence


def test_the_correct_sequence_of_one_person_is_live_and_the_session_then_used(api, shots):
    session, sequence = answerable_session(api, shots)
    body = decided(send_frames(api, session, [s.image for s in sequence]))
    assert body["live"] is True and body["reasons"] == [], (body, [s.name for s in sequence])
    assert [s["step"] for s in body["steps"]] == challenge_steps(session) and all(s["observed"] for s in body["steps"])
    assert 0 < body["score"] <= 1 and body["verification"] is None
    again = decided(send_frames(api, session, [s.image for s in sequence]))
    assert again["live"] is False and again["reasons"] == ["session_used"]


def test_the_steps_in_another_order_fail_as_wrong_step_order(api, shots):
    for _ in range(40):
        session = start_session(api)
        steps = challenge_steps(session)
        reordered = [steps[1], steps[0], *steps[2:]]
        sequence = sequence_for(reordered, shots)
        if sequence and not follows(steps, sequence):
            break
    else:
        pytest.fail("no reordered sequence found")
    body = decided(send_frames(api, session, [s.image for s in sequence]))
    assert body["live"] is False and "wrong_step_order" in body["reasons"], body
    assert not all(s["observed"] for s in body["steps"])


def test_one_photo_repeated_is_static_and_no_step_is_seen(api, shots):
    session = start_session(api)
    body = decided(send_frames(api, session, [shots[0].image] * 4))
    assert body["live"] is False and {"static_frames", "step_not_observed"} <= set(body["reasons"]), body
    # The same still re-encoded at another JPEG quality: not byte-identical, still a still.
    session = start_session(api)
    still = Image.open(io.BytesIO(shots[0].image)).convert("RGB")
    copies = []
    for quality in (95, 90, 85, 80):
        out = io.BytesIO()
        still.save(out, "JPEG", quality=quality)
        copies.append(out.getvalue())
    body = decided(send_frames(api, session, copies))
    assert body["live"] is False and "static_frames" in body["reasons"], body


def test_another_person_in_the_middle_is_identity_changed(api, shots, people, photos):
    session, sequence = answerable_session(api, shots)
    stranger = next(p for p in people if shots[0].name not in p.photos)
    images = [s.image for s in sequence]
    images.insert(len(images) // 2 + 1, photos(stranger.photos[0]))
    body = decided(send_frames(api, session, images))
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
    body = decided(send_frames(api, start_session(api), frames))
    assert body["live"] is False and "spoof_suspected" in body["reasons"], body


def test_an_expired_session_answers_session_expired(make_api, shots):
    with make_api(liveness_session_seconds=1) as api:
        session, sequence = answerable_session(api, shots)
        time.sleep(1.2)
        body = decided(send_frames(api, session, [s.image for s in sequence]))
        assert body["live"] is False and body["reasons"] == ["session_expired"]


def test_frames_captured_over_more_time_than_the_session_existed_are_implausible(api, shots):
    session, sequence = answerable_session(api, shots)
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={"tenant": "acme", "timestamps": [str(i * 20_000) for i in range(len(sequence))]},
        files=[("frames", (f"f{i}.jpg", s.image)) for i, s in enumerate(sequence)],
    )
    assert "implausible_timestamps" in decided(r)["reasons"]


def test_frames_in_several_calls_and_a_session_that_survives_a_restart(make_api, tmp_path, shots):
    data = tmp_path / "data"
    with make_api(data) as api:
        session, sequence = answerable_session(api, shots)
        first = send_frames(api, session, [sequence[0].image], final=False)
        assert first.status_code == 200 and first.json()["decided"] is False and first.json()["frames_received"] == 1
    with make_api(data) as api:  # a new process on the same stores
        rest = [s.image for s in sequence[1:]]
        body = decided(send_frames(api, session, rest, start_ms=time.time() * 1000))
        assert body["live"] is True and body["frames_received"] == len(sequence), body


def test_two_concurrent_final_submissions_claim_the_session_once(api, shots):
    session, sequence = answerable_session(api, shots)
    answers = []

    def submit() -> None:
        answers.append(send_frames(api, session, [s.image for s in sequence]).json())

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

    session, sequence = answerable_session(api, shots, subject_id="self")
    body = decided(send_frames(api, session, [s.image for s in sequence]))
    v = body["verification"]
    assert v["type"] == "subject" and v["id"] == "self" and v["matched"] is True and v["face_id"] == "self"
    assert v["score"] >= v["threshold"]

    session, sequence = answerable_session(api, shots, reference_id="stranger")
    v = decided(send_frames(api, session, [s.image for s in sequence]))["verification"]
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
    session = start_session(api)
    assert code(send_frames(api, session, [shots[0].image, shots[1].image]), 422) == "invalid_frame_count"
    assert code(send_frames(api, session, [shots[0].image] * 13), 422) == "invalid_frame_count"
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
    assert code(send_frames(api, unknown, [shots[0].image] * 3), 404) == "session_not_found"
    assert code(send_frames(api, {"session_id": "nope"}, [shots[0].image] * 3), 422) == "validation_error"
    # Another tenant's session is not found (an admin naming the wrong tenant sees nothing either).
    r = send_frames(api, session, [s.image for s in shots[:3]], tenant="other")
    assert code(r, 404) == "session_not_found"
    # The longest tenant name fits the session's object key.
    long_tenant = "t" * 256
    created = api.post("/v1/liveness/sessions", data={"tenant": long_tenant})
    assert created.status_code == 200, created.text
    assert decided(send_frames(api, created.json(), [s.image for s in shots[:3]], tenant=long_tenant))["live"] is False
    # The session was not spent by any of these.
    assert send_frames(api, session, [s.image for s in shots[:3]]).json()["decided"] is True


def test_the_reference_client_is_served_without_a_key(api):
    del api.headers["X-Api-Key"]
    r = api.get("/liveness.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "export async function runLiveness" in r.text and "/v1/liveness/sessions" in r.text


def test_frames_as_base64_are_accepted(api, shots):
    import base64

    session, sequence = answerable_session(api, shots)
    now = time.time() * 1000
    r = api.post(
        f"/v1/liveness/sessions/{session['session_id']}/frames",
        data={
            "tenant": "acme",
            "frames_b64": [base64.b64encode(s.image).decode() for s in sequence],
            "timestamps": [str(now + 40 * i) for i in range(len(sequence))],
        },
    )
    assert decided(r)["live"] is True


def test_shots_are_really_different_poses(shots):
    """The material itself: the chosen person's photos span the challenge's movements."""
    yaws = np.array([s.yaw for s in shots])
    assert yaws.max() - yaws.min() >= DEFAULTS.liveness_yaw_degrees + MARGIN
