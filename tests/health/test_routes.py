"""Readiness names the dependency that is down; the ML service down means 503 and nothing written."""

from __future__ import annotations

from bench.servers.process import free_port
from tests.apitest import enrol, search, stored_keys


def test_healthz_answers_with_a_request_id(api):
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"requestId": r.headers["x-request-id"], "status": "ok"}


def test_ml_service_down_is_503_writes_nothing_and_readyz_says_so(make_api, people, photos):
    with make_api(ml_inference_service_url=f"http://127.0.0.1:{free_port()}", ml_connect_retries=1) as api:
        r = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
        assert r.status_code == 503 and r.json()["error"]["code"] == "ml_service_unavailable"
        assert r.json()["requestId"] == r.headers["x-request-id"]
        assert stored_keys(api) == []
        r = search(api, "acme", photos(people[0].probe_photo))
        assert r.status_code == 503 and r.json()["error"]["code"] == "ml_service_unavailable"

        ready = api.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["ml_service"]["status"] == "down" and checks["ml_service"]["detail"]
        assert checks["milvus"]["status"] == "ok" and checks["object_store"]["status"] == "ok"


def test_a_wrong_internal_token_is_a_503_not_the_callers_fault(make_api, people, photos):
    with make_api(ml_inference_auth_token="wrong") as api:
        r = enrol(api, "acme", "emp_1", photos(people[0].enrol_photo))
        assert r.status_code == 503 and r.json()["error"]["code"] == "ml_service_error"
        assert stored_keys(api) == []
