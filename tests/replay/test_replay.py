"""Replay detection on verify, search and liveness, with real photos."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.apitest import enrol, search
from tests.liveness.sequences import answerable_session, decided, send_frames


@pytest.fixture
def api(make_api):
    """A Face API with replay detection on for every tenant."""
    with make_api(replay_tenants="*") as client:
        yield client


def _verify(api, probe: bytes, tenant: str = "acme"):
    data = {"tenant": tenant, "reference_id": "emp_1"}
    body = api.post("/v1/faces/verify", data=data, files=[("probes", ("p.jpg", probe))]).json()
    return body["probes"][0]


def _reencoded(image: bytes, crop: int = 0) -> bytes:
    """The same photo saved again (and slightly cropped): other bytes, the same face."""
    im = Image.open(io.BytesIO(image)).convert("RGB")
    if crop:
        im = im.crop((crop, crop, im.width - crop, im.height - crop))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=88)
    return out.getvalue()


def test_a_resubmitted_probe_is_a_replay_on_verify(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = photos(people[0].probe_photo)
    first = _verify(api, probe)
    assert first["matched"] is True and first["reason"] is None
    again = _verify(api, probe)
    assert again["matched"] is False and again["reason"] == "replayed_probe"
    near = _verify(api, _reencoded(probe, crop=4))  # re-encoded and cropped: not byte-identical
    assert near["reason"] == "replayed_probe"
    # Another genuine photo of the same person is not a replay.
    other = next(name for name in people[0].photos if name not in (people[0].enrol_photo, people[0].probe_photo))
    fresh = _verify(api, photos(other))
    assert fresh["reason"] != "replayed_probe", fresh


def test_the_enrolment_photo_again_is_a_replay(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    assert _verify(api, _reencoded(photos(people[0].enrol_photo)))["reason"] == "replayed_probe"
    r = search(api, "acme", photos(people[0].enrol_photo))
    body = r.json()["searchResult"]
    assert body["matches"] == [] and body["skipped_reason"] == "replayed_probe"


def test_search_flags_a_repeated_probe_and_a_tenant_can_turn_it_off(make_api, people, photos):
    probe = photos(people[0].probe_photo)
    with make_api(replay_tenants="*", replay_disabled_tenants="relaxed") as api:
        for tenant in ("acme", "relaxed"):
            assert enrol(api, tenant, "emp_1", photos(people[0].enrol_photo)).status_code == 200
        assert search(api, "acme", probe).json()["searchResult"]["matches"][0]["id"] == "emp_1"
        assert search(api, "acme", probe).json()["searchResult"]["skipped_reason"] == "replayed_probe"
        for _ in range(2):
            assert search(api, "relaxed", probe).json()["searchResult"]["matches"][0]["id"] == "emp_1"
            assert _verify(api, probe, tenant="relaxed")["matched"] is True


def test_replay_detection_is_off_unless_the_tenant_is_named(make_api, people, photos):
    probe = photos(people[0].probe_photo)
    with make_api(replay_tenants="acme") as api:
        for tenant in ("acme", "other"):
            assert enrol(api, tenant, "emp_1", photos(people[0].enrol_photo)).status_code == 200
            _verify(api, probe, tenant=tenant)
        assert _verify(api, probe, tenant="acme")["reason"] == "replayed_probe"
        assert _verify(api, probe, tenant="other")["matched"] is True


def test_the_window_keeps_fingerprints_not_images(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = photos(people[0].probe_photo)
    _verify(api, probe)
    objects = api.app.state.container.objects
    keys = api.portal.call(objects.list, "_replay/acme/")
    assert len(keys) == 1
    stored = api.portal.call(objects.get, keys[0]).data
    assert probe[:64] not in stored and b"\xff\xd8" not in stored
    assert b"sha256" in stored and b"embedding" in stored


def test_a_liveness_session_with_a_replayed_frame_fails(api, shots):
    assert enrol(api, "acme", "me", shots[0].image).status_code == 200
    session, sequence = answerable_session(api, shots, subject_id="me")
    body = decided(send_frames(api, session, [s.image for s in sequence]))
    replayed = shots[0] in sequence  # the enrolment photo among the frames
    assert ("replayed_probe" in body["reasons"]) is replayed, body
    # The same frames in a new session: every one of them was seen.
    session, _ = answerable_session(api, shots, subject_id="me")
    body = decided(send_frames(api, session, [s.image for s in sequence]))
    assert body["live"] is False and "replayed_probe" in body["reasons"]
