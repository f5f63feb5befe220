"""/v1/keys over REST: admin keys create, list and revoke; a key is shown once; tenants and their counts."""

from __future__ import annotations

from tests.apitest import enrol, new_key


def test_an_admin_key_creates_lists_and_revokes_keys(make_api):
    with make_api() as api:
        r = api.post("/v1/keys", json={"tenant": "acme", "name": "front desk"})
        assert r.status_code == 201, r.text
        created = r.json()
        token, key_id = created["key"], created["key_id"]
        assert token.startswith(f"fa_{key_id}_") and created["tenant"] == "acme" and created["active"]

        listed = api.get("/v1/keys").json()["keys"]
        mine = [k for k in listed if k["key_id"] == key_id]
        assert mine and "key" not in mine[0] and mine[0]["name"] == "front desk"
        assert all(token not in str(k) for k in listed)  # the secret is shown once, in the creating answer

        caller = api.get("/v1/caller", headers={"X-Api-Key": token}).json()
        assert caller == {"requestId": caller["requestId"], "key_id": key_id, "tenant": "acme", "admin": False}

        r = api.delete(f"/v1/keys/{key_id}")
        assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at_ms"]
        assert api.delete(f"/v1/keys/{key_id}").status_code == 200  # idempotent
        # Revoked through this API, the key is refused at once here (other replicas: within their 10 s cache).
        r = api.get("/v1/caller", headers={"X-Api-Key": token})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

        admin = api.post("/v1/keys", json={"tenant": None}).json()
        assert admin["admin"] is True and admin["tenant"] is None


def test_bad_key_requests_get_stable_codes(make_api):
    with make_api() as api:
        own = api.get("/v1/caller").json()["key_id"]
        r = api.delete(f"/v1/keys/{own}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "cannot_revoke_own_key"
        r = api.delete("/v1/keys/0123456789abcdef")
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found" and r.json()["requestId"]
        assert api.delete("/v1/keys/not-a-key-id").status_code == 422
        for body in ({"tenant": "_keys"}, {"tenant": "a" * 300}, {"name": "x" * 201}, {"tenant": 5}):
            r = api.post("/v1/keys", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["error"]["code"] == "validation_error"
        r = api.post("/v1/keys", content=b"not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422


def test_tenant_counts_for_an_admin_key(make_api, people, photos):
    with make_api() as api:
        assert api.get("/v1/tenants").json()["tenants"] == []
        assert enrol(api, "acme", "a1", photos(people[0].enrol_photo)).status_code == 200
        assert enrol(api, "acme", "a2", photos(people[1].enrol_photo)).status_code == 200
        assert enrol(api, "zeta", "z1", photos(people[2].enrol_photo)).status_code == 200
        answer = api.get("/v1/tenants").json()
        assert answer["complete"] is True
        assert [(t["tenant"], t["faces"], t["subjects"]) for t in answer["tenants"]] == [("acme", 2, 2), ("zeta", 1, 1)]
        # A tenant key sees its own tenant, even when it has no faces yet.
        empty = api.get("/v1/tenants", headers={"X-Api-Key": new_key(api, "newco")}).json()["tenants"]
        assert empty == [{"tenant": "newco", "faces": 0, "subjects": 0}]
