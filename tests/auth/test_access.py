"""API keys on every route: 401 without a valid key, 403 for another tenant's key, 429 past the rate limit."""

from __future__ import annotations

import json
import logging

import pytest

from faceauth.auth.middleware import OPEN_PATHS
from faceauth.images.links import LINK_PATH
from tests.apitest import enrol, new_key


def _routes(app) -> list[tuple[str, str]]:
    """Every operation of the API's OpenAPI document that needs a key (probes and signed image links do not)."""
    return sorted(
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if path not in OPEN_PATHS and not path.startswith(LINK_PATH)
    )


def test_every_route_without_a_key_is_401_before_reading_the_body(make_api):
    # Many wrong keys from one address: the failed-authentication limit (tests/auth/test_cache.py) is lifted here.
    with make_api(auth_failures_burst=100_000) as api:
        del api.headers["X-Api-Key"]
        routes = _routes(api.app)
        assert len(routes) >= 15
        for method, path in routes:
            url = path.replace("{face_id}", "x").replace("{subject_id}", "x").replace("{tenant}", "x")
            for headers in ({}, {"X-Api-Key": "fa_0000000000000000_" + "A" * 43}, {"Authorization": "Basic abc"}):
                r = api.request(method, url, headers=headers, content=b"x" * 100)
                assert r.status_code == 401, (method, path, headers, r.text)
                body = r.json()
                assert body["error"]["code"] in {"unauthorized", "invalid_api_key"} and body["requestId"]
                assert r.headers["www-authenticate"].startswith("Bearer")
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            assert api.get(path).status_code == 200, path


@pytest.fixture
def two_tenants(make_api, people, photos):
    """An API with face `emp_1` in tenant `bravo`; the client holds a key of tenant `alpha`."""
    # Two requests per route with one key: a burst above the default (40), which another test checks.
    with make_api(key_tenant="alpha", rate_limit_burst=500) as api:
        admin = {"X-Api-Key": new_key(api, None)}
        r = api.post(
            "/v1/faces/insert",
            data={"id": "emp_1", "tenant": "bravo"},
            files={"file": ("p.jpg", photos(people[0].enrol_photo))},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        yield api


def _requests_naming(tenant: str, face_id: str, photo: bytes) -> dict[tuple[str, str], dict]:
    """One valid request per route that acts on stored data, naming `tenant`."""
    file = {"file": ("p.jpg", photo)}
    return {
        ("POST", "/v1/faces/insert"): {"data": {"id": face_id, "tenant": tenant}, "files": file},
        ("POST", "/v1/faces/upsert"): {"data": {"id": face_id, "tenant": tenant}, "files": file},
        ("POST", "/v1/faces/search"): {"data": {"tenant": tenant}, "files": file},
        ("POST", "/v1/faces/detect"): {"data": {"tenant": tenant}, "files": file},
        ("POST", "/v1/faces/recognize"): {"data": {"tenant": tenant}, "files": file},
        ("POST", "/v1/faces/search/by-face"): {"json": {"tenant": tenant, "face_id": face_id}},
        ("POST", "/v1/faces/search/by-embedding"): {"json": {"tenant": tenant, "embedding": [0.1] * 512}},
        ("POST", "/v1/faces/delete-many"): {"json": {"tenant": tenant, "ids": [face_id]}},
        ("POST", "/v1/faces/batch/insert"): {
            "data": {"tenant": tenant, "ids": [face_id]},
            "files": [("files", ("p.jpg", photo))],
        },
        ("POST", "/v1/faces/verify"): {
            "data": {"tenant": tenant, "reference_id": face_id},
            "files": [("probes", ("p.jpg", photo))],
        },
        ("POST", "/v1/faces/cluster"): {"json": {"tenant": tenant}},
        ("GET", "/v1/faces/get/{face_id}"): {"params": {"tenant": tenant}},
        ("GET", "/v1/faces/image-url/{face_id}"): {"params": {"tenant": tenant}},
        ("DELETE", "/v1/faces/delete"): {"params": {"tenant": tenant, "id": face_id}},
        ("GET", "/v1/subjects"): {"params": {"tenant": tenant}},
        ("GET", "/v1/subjects/{subject_id}"): {"params": {"tenant": tenant}},
        ("DELETE", "/v1/subjects/{subject_id}"): {"params": {"tenant": tenant}},
        ("POST", "/v1/subjects/{subject_id}/rename"): {"params": {"tenant": tenant, "new_subject_id": "renamed"}},
        ("POST", "/v1/subjects/{subject_id}/merge"): {"params": {"tenant": tenant, "into": "other"}},
        ("POST", "/v1/subjects/{subject_id}/move-face"): {"params": {"tenant": tenant, "face_id": face_id}},
        ("DELETE", "/v1/tenants/{tenant}"): {},
    }


def test_a_tenant_key_on_another_tenant_is_403_on_every_route_and_reveals_nothing(two_tenants, people, photos):
    api = two_tenants
    # Routes that take no tenant act on no stored data (or on the key's own tenant): listed, so a new route
    # must be placed in one group or the other.
    no_tenant = {("POST", "/compare-faces")}
    answers = {}
    for face_id in ("emp_1", "nobody"):
        cases = _requests_naming("bravo", face_id, photos(people[0].probe_photo))
        routes = set(_routes(api.app))
        assert routes == set(cases) | no_tenant, routes ^ (set(cases) | no_tenant)
        for (method, path), kwargs in cases.items():
            url = path.replace("{face_id}", face_id).replace("{subject_id}", face_id).replace("{tenant}", "bravo")
            r = api.request(method, url, **kwargs)
            assert r.status_code == 403, (method, path, r.text)
            answers.setdefault((method, path), set()).add(json.dumps(r.json()["error"], sort_keys=True))
    # The same answer whether or not the face exists in the other tenant.
    assert all(len(bodies) == 1 for bodies in answers.values()), answers
    # Nothing changed in tenant bravo.
    admin = {"X-Api-Key": new_key(api, None)}
    assert api.get("/v1/faces/get/emp_1", params={"tenant": "bravo"}, headers=admin).status_code == 200


def test_a_tenant_key_works_on_its_own_tenant_and_admin_only_calls_are_refused(two_tenants, people, photos):
    api = two_tenants
    assert enrol(api, "alpha", "emp_9", photos(people[1].enrol_photo)).status_code == 200
    r = api.post("/v1/faces/search", data={"tenant": "alpha"}, files={"file": ("q.jpg", photos(people[1].probe_photo))})
    assert [m["id"] for m in r.json()["searchResult"]["matches"]] == ["emp_9"]
    # A tenant key may not purge even its own tenant: erasure is an operator's (admin key) decision.
    r = api.delete("/v1/tenants/alpha")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # Bearer works like X-Api-Key.
    token = api.headers.pop("X-Api-Key")
    r = api.get("/v1/faces/get/emp_9", params={"tenant": "alpha"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


def test_revoked_and_tampered_keys_are_refused(make_api):
    with make_api() as api:
        store = api.app.state.container.key_store
        key, token = api.portal.call(store.create, "acme", "to revoke")
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": tampered}).status_code == 401
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": token}).status_code == 200
        api.portal.call(store.revoke, key.key_id)
        api.app.state.container.key_cache._entries.clear()  # the 10 s cache: a new process sees the revocation at once
        r = api.get("/v1/subjects", params={"tenant": "acme"}, headers={"X-Api-Key": token})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_keys_are_stored_hashed(make_api):
    with make_api() as api:
        key, token = api.portal.call(api.app.state.container.key_store.create, "acme", "")
        stored = api.portal.call(api.app.state.container.objects.get, f"_keys/{key.key_id}").data
        assert token.encode() not in stored and token.split("_", 2)[2].encode() not in stored  # fa_<id>_<secret>
        assert json.loads(stored)["digest"] == key.digest


def test_the_rate_limit_answers_429_with_retry_after_per_key(make_api):
    with make_api(rate_limit_per_second=0.5, rate_limit_burst=3) as api:
        other = {"X-Api-Key": new_key(api, None)}
        statuses = [api.get("/v1/subjects", params={"tenant": "acme"}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = api.get("/v1/subjects", params={"tenant": "acme"})
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        assert api.get("/v1/subjects", params={"tenant": "acme"}, headers=other).status_code == 200


def test_disabled_authentication_lets_everybody_in_and_warns(make_api, caplog):
    with caplog.at_level(logging.WARNING, logger="faceauth.api.app"), make_api(auth_disabled=True) as api:
        assert "X-Api-Key" not in api.headers
        assert api.get("/v1/subjects", params={"tenant": "acme"}).status_code == 200
    assert any("FACEAUTH_AUTH_DISABLED" in r.getMessage() for r in caplog.records)
