"""/v1/faces/cluster over a tenant's enrolled faces (real photos) and over given embeddings."""

from __future__ import annotations

from tests.apitest import enrol


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
        "embeddings": [[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.05], [0, 0, 1]],
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
    with make_api(cluster_max_faces=3) as api:

        def code(body: dict) -> tuple[int, str]:
            r = api.post("/v1/faces/cluster", json=body)
            return r.status_code, r.json()["error"]["code"]

        assert code({"embeddings": [[1, 0]] * 4}) == (413, "too_many_faces")
        assert code({"embeddings": [[1, 0], [1, 0, 0]]}) == (422, "validation_error")
        assert code({"embeddings": [[0, 0], [1, 0]]}) == (422, "validation_error")
        assert code({"embeddings": [[1, 0]], "ids": ["a", "b"]}) == (422, "validation_error")
        assert code({"tenant": "acme", "embeddings": [[1, 0]]}) == (422, "validation_error")
        assert code({}) == (422, "validation_error")
        assert code({"tenant": "acme", "eps": 0}) == (422, "validation_error")
        assert code({"tenant": "acme", "min_samples": 0}) == (422, "validation_error")
