"""Schemathesis against the Face API's OpenAPI, in-process on real embedded stores and the real ML service.

`test_face_api_openapi` fuzzes every operation from the document. Random data never enrols anybody, so
`test_face_api_real_answers` walks every operation with real photos (enrol, search, verify, cluster, ... purge)
and `test_face_api_odd_photos` sends damaged and oddly encoded photos through the photo routes: their answers,
successes included, are checked against the document too.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, seed
from hypothesis import strategies as st

from faceauth.api.app import create_app
from faceauth.api.container import open_object_store
from faceauth.config import APISettings
from tests.apitest import Person
from tests.fuzz import SEED, Target, config, files_as_files, hypothesis_settings, odd_photos

# The app's own document, built without starting the app (nothing is opened at collection).
schema = schemathesis.openapi.from_dict(
    files_as_files(create_app(APISettings(_env_file=None, data_dir=Path("unused"))).openapi()), config=config()
)


@schema.parametrize()
@hypothesis_settings(max_examples=100)
def test_face_api_openapi(case: schemathesis.Case, face_api_target: Target) -> None:
    face_api_target.call_and_validate(case)


def _call(target: Target, method: str, path: str, status: int, **parts: Any) -> Any:
    """One request built from the document's operation, its answer checked against the document."""
    response = target.call_and_validate(schema[path][method].Case(**parts))
    assert response.status_code == status, (method, path, response.status_code, response.text)
    return response.json()


def _put_objects(target: Target, objects: dict[str, bytes]) -> None:
    """Objects written straight into the API's object store (the drop area that s3:// photo URLs read)."""

    async def put() -> None:
        store = open_object_store(target.app.state.settings)
        await store.open()
        try:
            for key, data in objects.items():
                await store.put(key, data, "image/jpeg")
        finally:
            await store.close()

    asyncio.run(put())


def test_face_api_real_answers(face_api_target: Target, people: list[Person], photos) -> None:
    target, tenant = face_api_target, "conformance"
    alice, bob = people[0], people[1]
    a1, a2, b1 = photos(alice.enrol_photo), photos(alice.probe_photo), photos(bob.enrol_photo)

    def enrol(op: str, face_id: str, image: bytes, status: int = 200, **fields: Any) -> Any:
        body = {"id": face_id, "tenant": tenant, "file": image, **fields}
        return _call(target, "POST", f"/v1/faces/{op}", status, media_type="multipart/form-data", body=body)

    _call(target, "GET", "/healthz", 200)
    _call(target, "GET", "/readyz", 200)
    assert enrol("insert", "alice-1", a1, subject_id="alice")["face"]["subject_id"] == "alice"
    assert enrol("insert", "alice-1", a1, 409)["error"]["code"] == "face_already_exists"
    enrol("upsert", "alice-1", a1, subject_id="alice")
    enrol("insert", "alice-2", a2, subject_id="alice", aligned=False)
    assert enrol("insert", "bob-1", b1, dedup=True)["face"]["subject_id"] == "bob-1"
    assert enrol("insert", "alice-3", a2, 409, dedup=True)["error"]["code"] == "duplicate_face"

    multipart = "multipart/form-data"
    found = _call(
        target,
        "POST",
        "/v1/faces/search",
        200,
        media_type=multipart,
        body={"tenant": tenant, "image_b64": base64.b64encode(a2).decode(), "id": "q1"},
        query={"top_k": 3, "threshold": 0.2, "group_by": "subject"},
    )
    assert found["searchResult"]["matches"][0]["subject_id"] == "alice"
    detected = _call(target, "POST", "/v1/faces/detect", 200, media_type=multipart, body={"file": b1})
    assert detected["faces_count"] >= 1
    verdict = _call(
        target,
        "POST",
        "/v1/faces/verify",
        200,
        media_type=multipart,
        body={"tenant": tenant, "reference_id": "alice-1", "probes": [a2, b1], "min_matches": 1},
    )
    assert verdict["matched"] is True and verdict["matches"] == 1
    _call(
        target,
        "POST",
        "/v1/faces/verify",
        200,
        media_type=multipart,
        body={"reference": a1, "probes_b64": [base64.b64encode(b1).decode()], "require_quality": False},
    )

    bucket = target.app.state.settings.minio_bucket
    _put_objects(target, {"_uploads/front.jpg": a2, "_uploads/back.jpg": a1, "_uploads/other.jpg": b1})
    url = f"s3://{bucket}/_uploads/"
    compared = _call(
        target,
        "POST",
        "/compare-faces",
        200,
        media_type="application/json",
        body={
            "user_id": "u1",
            "front_image1": url + "front.jpg",
            "front_image2": url + "front.jpg",
            "front_image3": url + "other.jpg",
            "back_image": url + "back.jpg",
        },
    )
    assert compared["matched"] is True and compared["scores"][2] is not None

    batch = _call(
        target,
        "POST",
        "/v1/faces/batch/insert",
        200,
        media_type=multipart,
        body={"tenant": tenant, "ids": ["batch-1", "batch-2"], "files": [b1, b"not a photo"], "upsert": True},
    )
    assert [item["status"] for item in batch["results"]] == [200, 422]

    face = _call(
        target, "GET", "/v1/faces/get/{face_id}", 200, path_parameters={"face_id": "alice-2"}, query={"tenant": tenant}
    )
    assert face["subject_id"] == "alice"
    _call(
        target, "GET", "/v1/faces/get/{face_id}", 404, path_parameters={"face_id": "nobody"}, query={"tenant": tenant}
    )
    page = _call(target, "GET", "/v1/subjects", 200, query={"tenant": tenant, "limit": 1})
    assert len(page["subjects"]) == 1 and page["next_cursor"]
    _call(target, "GET", "/v1/subjects", 200, query={"tenant": tenant, "cursor": page["next_cursor"]})
    subject = _call(
        target,
        "GET",
        "/v1/subjects/{subject_id}",
        200,
        path_parameters={"subject_id": "alice"},
        query={"tenant": tenant},
    )
    assert [f["face_id"] for f in subject["faces"]] == ["alice-1", "alice-2"]

    clusters = _call(
        target, "POST", "/v1/faces/cluster", 200, media_type="application/json", body={"tenant": tenant, "eps": 0.6}
    )
    assert clusters["model_id"]
    _call(
        target,
        "POST",
        "/v1/faces/cluster",
        200,
        media_type="application/json",
        body={
            # The embedding model's dimension (512): short vectors padded with zeros.
            "embeddings": [v + [0.0] * 510 for v in ([1.0, 0.0], [0.99, 0.1], [0.0, 1.0])],
            "ids": ["a", "b", "c"],
            "min_samples": 2,
        },
    )

    _call(target, "DELETE", "/v1/faces/delete", 200, query={"id": "bob-1", "tenant": tenant})
    _call(target, "DELETE", "/v1/faces/delete", 404, query={"id": "bob-1", "tenant": tenant})
    deleted = _call(
        target,
        "DELETE",
        "/v1/subjects/{subject_id}",
        200,
        path_parameters={"subject_id": "alice"},
        query={"tenant": tenant},
    )
    assert sorted(deleted["deleted_faces"]) == ["alice-1", "alice-2"]
    purged = _call(target, "DELETE", "/v1/tenants/{tenant}", 200, path_parameters={"tenant": tenant})
    assert purged["deleted"]["faces"] >= 1


@pytest.fixture(scope="module")
def odd_sources(people: list[Person], photos) -> list[bytes]:
    return [photos(people[0].enrol_photo), photos("couple.jpg")]


# Pillow warns about the damaged files it still reads.
@pytest.mark.filterwarnings("ignore::UserWarning")
@hypothesis_settings(max_examples=20)
@given(data=st.data())
@seed(SEED)
def test_face_api_odd_photos(face_api_target: Target, odd_sources: list[bytes], data: st.DataObject) -> None:
    image = data.draw(odd_photos(odd_sources), label="image")
    path = data.draw(st.sampled_from(["/v1/faces/detect", "/v1/faces/search", "/v1/faces/upsert"]), label="path")
    body: dict[str, Any] = {"tenant": "odd"}
    if path == "/v1/faces/upsert":
        body["id"] = "odd-face"
    if data.draw(st.booleans(), label="as base64"):
        body["image_b64"] = base64.b64encode(image.data).decode()
    else:
        body["file"] = image.data
    body["aligned"] = data.draw(st.booleans(), label="aligned")
    face_api_target.call_and_validate(schema[path]["POST"].Case(media_type="multipart/form-data", body=body))
