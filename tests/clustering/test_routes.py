"""/v1/faces/cluster over a tenant's enrolled faces (real photos) and over given embeddings."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc

from faceauth.clustering.service import ClusterService
from tests.apitest import enrol

DIM = 512  # the embedding model's dimension


def wide(*vectors: list[float]) -> list[list[float]]:
    """Short vectors padded with zeros to the model's dimension (the API takes only those)."""
    return [list(v) + [0.0] * (DIM - len(v)) for v in vectors]


def test_a_tenants_faces_cluster_by_person(api, people, photos):
    owner: dict[str, int] = {}
    for p, person in enumerate(people[:4]):
        for k, name in enumerate(person.photos[:3]):
            face_id = f"p{p}_{k}"
            assert enrol(api, "acme", face_id, photos(name)).status_code == 200
            owner[face_id] = p
    assert enrol(api, "other", "x", photos(people[0].enrol_photo)).status_code == 200

    r = api.post("/v1/faces/cluster", json={"tenant": "acme", "eps": 0.6, "min_samples": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] and body["requestId"]
    clusters = [c["ids"] for c in body["clusters"]]
    # Each cluster is one person, and each person is one cluster.
    assert sorted({owner[i] for i in ids}.pop() for ids in clusters) == [0, 1, 2, 3]
    assert all(len({owner[i] for i in ids}) == 1 for ids in clusters)
    assert body["noise"] == []
    assert sorted(i for ids in clusters for i in ids) == sorted(owner)

    # A tiny eps leaves every face alone: all noise.
    tight = api.post("/v1/faces/cluster", json={"tenant": "acme", "eps": 0.001, "min_samples": 2}).json()
    assert tight["clusters"] == [] and sorted(tight["noise"]) == sorted(owner)


def test_given_embeddings_cluster_with_their_ids(api):
    body = {
        "embeddings": wide([1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.05], [0, 0, 1]),
        "ids": ["a", "b", "c", "d", "e"],
        "eps": 0.05,
        "min_samples": 2,
    }
    r = api.post("/v1/faces/cluster", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [c["ids"] for c in answer["clusters"]] == [["a", "b"], ["c", "d"]]
    assert answer["noise"] == ["e"] and answer["model_id"] is None


def test_cluster_rejects_bad_requests_with_codes(make_api):
    with make_api(cluster_max_embeddings=3) as api:

        def code(body: dict) -> tuple[int, str]:
            r = api.post("/v1/faces/cluster", json=body)
            return r.status_code, r.json()["error"]["code"]

        assert code({"embeddings": wide([1, 0]) * 4}) == (413, "too_many_faces")
        assert code({"embeddings": [*wide([1, 0]), [1.0] * (DIM + 1)]}) == (422, "validation_error")
        assert code({"embeddings": wide([0, 0], [1, 0])}) == (422, "validation_error")
        assert code({"embeddings": wide([1, 0]), "ids": ["a", "b"]}) == (422, "validation_error")
        assert code({"tenant": "acme", "embeddings": wide([1, 0])}) == (422, "validation_error")
        assert code({"embeddings": wide([1, 0]), "eps": 1.5}) == (422, "validation_error")  # eps is capped at 1
        assert code({}) == (422, "validation_error")
        assert code({"tenant": "acme", "eps": 0}) == (422, "validation_error")
        assert code({"tenant": "acme", "min_samples": 0}) == (422, "validation_error")


def test_embeddings_must_have_the_models_dimension(api):
    r = api.post("/v1/faces/cluster", json={"embeddings": [[1.0], [1.0], [1.0]]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert "512" in r.json()["error"]["message"] and r.json()["requestId"]


def test_twenty_thousand_identical_vectors_are_refused_fast_and_small(api):
    """The attack of issue 14: 20,000 identical 1-d vectors (140 KB) made dbscan expand 4e8 neighbour pairs
    (~29 GB). Now: a 4xx, and the request allocates little (tracemalloc sees numpy's and Python's allocations)."""
    # Code without the defences fails here, before the attack that would take it ~29 GB.
    assert api.post("/v1/faces/cluster", json={"embeddings": [[1.0]] * 3}).status_code == 422
    body = {"embeddings": [[1.0]] * 20000, "eps": 0.5, "min_samples": 2}
    tracemalloc.start()
    try:
        r = api.post("/v1/faces/cluster", json=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] in ("too_many_faces", "validation_error")
    assert peak < 100 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_a_dense_input_stops_at_the_pair_budget(make_api):
    # 1000 identical 512-d vectors: 1e6 neighbour pairs, over a budget of 100,000.
    with make_api(cluster_max_pairs=100_000) as api:
        r = api.post("/v1/faces/cluster", json={"embeddings": wide([1.0]) * 1000, "eps": 0.3})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "too_dense"
        # Under the budget the same request clusters.
        r = api.post("/v1/faces/cluster", json={"embeddings": wide([1.0]) * 300, "eps": 0.3})
        assert r.status_code == 200 and r.json()["clusters"][0]["size"] == 300


def test_one_clustering_job_per_key(make_api):
    with make_api() as api:
        container = api.app.state.container
        key, token = api.portal.call(container.key_store.create, "acme", "clusterer")
        service: ClusterService = api.app.state.services[ClusterService]
        held, release = threading.Event(), threading.Event()

        async def hold() -> None:
            async with service.one_job(key.key_id):
                held.set()
                await asyncio.to_thread(release.wait, 30)

        worker = threading.Thread(target=api.portal.call, args=(hold,))
        worker.start()
        try:
            assert held.wait(10)
            body = {"embeddings": wide([1, 0], [1, 0]), "eps": 0.1}
            busy = api.post("/v1/faces/cluster", json=body, headers={"X-Api-Key": token})
            assert busy.status_code == 429 and busy.json()["error"]["code"] == "cluster_busy"
            assert busy.headers["Retry-After"]
            # Another key is not held up.
            assert api.post("/v1/faces/cluster", json=body).status_code == 200
        finally:
            release.set()
            worker.join(10)
        assert api.post("/v1/faces/cluster", json=body, headers={"X-Api-Key": token}).status_code == 200


def test_the_body_limit_is_what_512_d_vectors_need(make_api):
    with make_api(cluster_max_embeddings=10) as api:
        huge = b'{"embeddings": [' + b",".join([b"[" + b",".join([b"0.5"] * DIM) + b"]"] * 2000) + b"]}"
        r = api.post("/v1/faces/cluster", content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
