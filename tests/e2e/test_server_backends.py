"""The Face API on real servers: Milvus (2.3.5 standalone, and `milvus-lite server` over gRPC) and S3 (`weed mini`).

The same journeys as on the embedded defaults, where the servers differ: consistency levels, the 2.3.5 upsert bug
(an upserted row vanishes from tenant-filtered searches; faceauth never uses Milvus upsert), S3 credentials.
"""

from __future__ import annotations

import uuid

import pytest

from bench.servers.milvus import MilvusLiteServer
from bench.servers.seaweed import running_weed
from tests.apitest import enrol, match_ids, search, stored_keys, stored_rows


@pytest.fixture(params=["milvus235", "lite-server"])
def server_api(request, make_api, weed, tmp_path):
    """make(): a Face API on a Milvus server and S3, with a collection and bucket of this test's own."""
    server = request.getfixturevalue("milvus_standalone" if request.param == "milvus235" else "milvus_lite_server")
    settings = {
        "milvus_uri": server.uri,
        "milvus_collection": f"e2e_{uuid.uuid4().hex[:12]}",
        "object_store": "s3",
        "minio_endpoint": weed.endpoint,
        "minio_access_key": weed.access_key,
        "minio_secret_key": weed.secret_key,
        "minio_bucket": f"e2e-{uuid.uuid4().hex[:12]}",
    }
    return lambda: make_api(**settings)


def test_enrol_search_upsert_delete_on_real_servers(server_api, people, photos):
    first, second, third = people[0], people[1], people[2]
    with server_api() as api:
        assert enrol(api, "acme", "emp_1", photos(first.enrol_photo)).status_code == 200
        assert enrol(api, "acme", "emp_2", photos(second.enrol_photo)).status_code == 200
        assert enrol(api, "other", "emp_1", photos(third.enrol_photo)).status_code == 200
        # read-your-writes: found by the very next search, no flush
        assert match_ids(search(api, "acme", photos(first.probe_photo)))[:1] == ["emp_1"]
        assert match_ids(search(api, "acme", photos(third.probe_photo))) == []
        assert match_ids(search(api, "other", photos(third.probe_photo))) == ["emp_1"]
        assert enrol(api, "acme", "emp_1", photos(second.enrol_photo)).status_code == 409

        # replace emp_1 by the third person: a tenant-filtered search must find the new face at once
        r = enrol(api, "acme", "emp_1", photos(third.enrol_photo), op="upsert")
        assert r.status_code == 200, r.text
        assert match_ids(search(api, "acme", photos(third.probe_photo))) == ["emp_1"]
        assert match_ids(search(api, "acme", photos(first.probe_photo))) == []
        assert stored_keys(api, "acme/emp_1/") == [r.json()["face"]["object_key"]]

        assert api.delete("/v1/faces/delete", params={"id": "emp_2", "tenant": "acme"}).status_code == 200
        assert match_ids(search(api, "acme", photos(second.probe_photo))) == []
        assert stored_keys(api, "acme/emp_2/") == []
        assert api.get("/v1/faces/get/emp_1", params={"tenant": "other"}).json()["tenant"] == "other"
        ready = api.get("/readyz").json()
        assert ready["status"] == "ok", ready

    # a new API process on the same servers sees every face
    with server_api() as api:
        assert match_ids(search(api, "acme", photos(third.probe_photo))) == ["emp_1"]
        assert match_ids(search(api, "other", photos(third.probe_photo))) == ["emp_1"]
        assert api.get("/v1/faces/get/emp_2", params={"tenant": "acme"}).status_code == 404


def test_wrong_s3_credentials_make_readyz_and_writes_fail_clearly(make_api, weed, people, photos):
    settings = {
        "object_store": "s3",
        "minio_endpoint": weed.endpoint,
        "minio_access_key": weed.access_key,
        "minio_secret_key": "not-the-secret",
        "minio_bucket": f"e2e-{uuid.uuid4().hex[:12]}",
        "startup_timeout_seconds": 0,
    }
    with pytest.raises(Exception, match="credentials"), make_api(**settings):
        pass


def test_a_store_that_goes_down_is_named_by_readyz_writes_nothing_and_recovers(make_api, people, photos, tmp_path):
    """Real server processes stopped mid-run and started again: the same API process recovers by itself."""
    with MilvusLiteServer(tmp_path / "milvus") as milvus, running_weed(tmp_path / "weed") as weed:
        settings = {
            "milvus_uri": milvus.uri,
            "milvus_timeout_seconds": 3,
            "object_store": "s3",
            "minio_endpoint": weed.endpoint,
            "minio_access_key": weed.access_key,
            "minio_secret_key": weed.secret_key,
            "minio_timeout_seconds": 5,
            "readiness_cache_seconds": 0,  # each /readyz here must see the outage or the recovery at once
        }
        with make_api(**settings) as api:
            assert enrol(api, "acme", "emp_1", photos(people[0].enrol_photo)).status_code == 200

            def outage(server, down: str, code: str, face_id: str, image: bytes) -> None:
                server.stop()
                ready = api.get("/readyz")
                assert ready.status_code == 503
                states = {name: c["status"] for name, c in ready.json()["checks"].items()}
                assert states == {
                    **{"milvus": "ok", "object_store": "ok", "ml_service": "ok", "ml_models": "ok"},
                    down: "down",
                }
                r = enrol(api, "acme", face_id, image)
                assert r.status_code == 503 and r.json()["error"]["code"] == code
                server.start()
                assert api.get("/readyz").status_code == 200
                # nothing of the failed insert is left in the store that stayed up
                assert stored_rows(api, "acme", face_id) == [] and stored_keys(api, f"acme/{face_id}/") == []
                assert enrol(api, "acme", face_id, image).status_code == 200

            outage(weed, "object_store", "object_store_unavailable", "emp_2", photos(people[1].enrol_photo))
            outage(milvus, "milvus", "vector_store_unavailable", "emp_3", photos(people[2].enrol_photo))
            for i, person in enumerate(people[:3], start=1):
                assert match_ids(search(api, "acme", photos(person.probe_photo))) == [f"emp_{i}"]
