"""Readiness names the dependency that is down; the ML service down means 503 and nothing written."""

from __future__ import annotations

import asyncio

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


class CountedPings:
    """Fault injection only (counting): a real object store that counts its pings."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.pings = 0

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    async def ping(self) -> None:
        self.pings += 1
        await self._real.ping()


def test_readyz_is_cached_and_shows_details_to_admin_keys_only(ml_service, make_api, tmp_path):
    from faceauth.api.container import open_object_store
    from tests.apitest import api_settings, new_key

    dead_ml = f"http://127.0.0.1:{free_port()}"
    settings = api_settings(ml_service, tmp_path / "data", ml_inference_service_url=dead_ml)
    objects = CountedPings(open_object_store(settings))
    with make_api(objects=objects, ml_inference_service_url=dead_ml, ml_connect_retries=1) as api:
        admin = api.headers.pop("X-Api-Key")
        before = objects.pings
        answers = [api.get("/readyz") for _ in range(10)]
        assert objects.pings - before == 1  # ten probes, one round of pings
        anonymous = answers[0].json()
        assert answers[0].status_code == 503 and anonymous["checks"]["ml_service"] == {
            "status": "down",
            "detail": None,
            "latency_ms": None,
        }
        assert all(c["detail"] is None for c in anonymous["checks"].values()) and anonymous["warnings"] == []
        assert "127.0.0.1" not in answers[0].text
        tenant = api.get("/readyz", headers={"X-Api-Key": new_key(api, "acme")}).json()
        assert tenant["checks"]["ml_service"]["detail"] is None
        forged = api.get("/readyz", headers={"X-Api-Key": "fa_0123456789abcdef_" + "x" * 43})
        assert forged.status_code == 503 and forged.json()["checks"]["ml_service"]["detail"] is None
        detailed = api.get("/readyz", headers={"X-Api-Key": admin}).json()
        assert detailed["checks"]["ml_service"]["detail"]  # why it is down, for an admin
    asyncio.run(objects.close())
