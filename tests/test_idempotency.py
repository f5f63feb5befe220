"""Idempotency-Key on verify, search and liveness: a retry gets the first answer, and is decided once."""

from __future__ import annotations

from tests.apitest import enrol
from tests.liveness.sequences import answerable_session, decided, send_frames


def test_a_retried_verify_gets_the_same_answer_and_is_not_recorded_twice(make_api, people, photos):
    with make_api(replay_tenants="*") as api:
        _retried_verify(api, people, photos)


def _retried_verify(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = photos(people[0].probe_photo)
    data = {"tenant": "acme", "reference_id": "emp_1"}
    files = [("probes", ("p.jpg", probe))]
    first = api.post("/v1/faces/verify", data=data, files=files, headers={"Idempotency-Key": "checkin-1"})
    retry = api.post("/v1/faces/verify", data=data, files=files, headers={"Idempotency-Key": "checkin-1"})
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json() and first.json()["matched"] is True
    assert retry.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    # Had the retry been decided again, the replay window would now hold the probe twice and a third, new
    # request would still be refused as a replay; one entry proves it was recorded once.
    objects = api.app.state.container.objects
    (window,) = api.portal.call(objects.list, "_replay/acme/")
    assert api.portal.call(objects.get, window).data.count(b"sha256") == 1
    # Without a key (or with another one) it is a new request: now a replay.
    again = api.post("/v1/faces/verify", data=data, files=files, headers={"Idempotency-Key": "checkin-2"})
    assert again.json()["probes"][0]["reason"] == "replayed_probe"


def test_keys_are_per_route_and_tenant_and_search_retries_repeat_the_answer(api, people, photos):
    assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200
    probe = {"file": ("q.jpg", photos(people[0].probe_photo))}
    headers = {"Idempotency-Key": "k"}
    first = api.post("/v1/faces/search", data={"tenant": "acme"}, files=probe, headers=headers).json()
    assert first["searchResult"]["matches"][0]["id"] == "emp_1"
    assert api.post("/v1/faces/search", data={"tenant": "acme"}, files=probe, headers=headers).json() == first
    other = api.post("/v1/faces/search", data={"tenant": "other"}, files=probe, headers=headers).json()
    assert other["searchResult"]["matches"] == [] and other["requestId"] != first["requestId"]


def test_a_retried_final_liveness_submission_gets_the_decision_not_session_used(api, shots):
    session, sequence = answerable_session(api, shots)
    images = [s.image for s in sequence]
    first = decided(send_frames(api, session, images, headers_key="live-1"))
    assert first["live"] is True
    retry = decided(send_frames(api, session, images, headers_key="live-1"))
    assert retry == first
    assert decided(send_frames(api, session, images))["reasons"] == ["session_used"]


def test_a_failed_request_is_not_kept(api, people, photos):
    headers = {"Idempotency-Key": "bad"}
    data = {"tenant": "acme", "reference_id": "nobody"}
    files = [("probes", ("p.jpg", photos(people[0].probe_photo)))]
    assert api.post("/v1/faces/verify", data=data, files=files, headers=headers).status_code == 404
    assert enrol(api, "acme", "nobody", photos(people[0].enrol_photo)).status_code == 200
    assert api.post("/v1/faces/verify", data=data, files=files, headers=headers).status_code == 200
