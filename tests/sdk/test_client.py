"""The SDK against a real Face API process and the real ML service: enrol, search, verify, delete, and the typed
error for each kind of refusal."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest

from faceauth.faces.schemas import EnrollResponse, SearchResponse
from faceauth.sdk import (
    AsyncFaceAuthClient,
    AuthenticationError,
    Base64,
    ConflictError,
    FaceAuthClient,
    FaceAuthConnectionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QualityRefusedError,
)
from faceauth.verification.schemas import VerifyResponse


@pytest.fixture
def acme(running_api):
    with FaceAuthClient(running_api.url, running_api.acme_key) as client:
        yield client


def _blank_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 320), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def test_enrol_search_verify_and_delete_with_a_tenant_key(acme, people, faces_dir):
    alice, bob = people[0], people[1]
    enrolled = acme.insert("sdk_alice", faces_dir / alice.enrol_photo)  # a path
    assert isinstance(enrolled, EnrollResponse) and enrolled.face.tenant == "acme"  # the key implies its tenant
    assert enrolled.requestId and enrolled.requestId != "-"
    # bytes, a file object and base64 are photos too
    acme.insert("sdk_bob", (faces_dir / bob.enrol_photo).read_bytes(), subject_id="bob")
    with (faces_dir / bob.probe_photo).open("rb") as f:
        found = acme.search(f)
    assert isinstance(found, SearchResponse)
    assert found.searchResult.matches[0].id == "sdk_bob" and found.searchResult.matches[0].subject_id == "bob"
    probe = Base64(base64.b64encode((faces_dir / alice.probe_photo).read_bytes()).decode())
    verdict = acme.verify(probe, reference_id="sdk_alice")
    assert isinstance(verdict, VerifyResponse) and verdict.matched
    assert not acme.verify(faces_dir / bob.probe_photo, reference_id="sdk_alice").matched

    assert acme.get("sdk_alice").face_id == "sdk_alice"
    assert {s.subject_id for s in acme.subjects.list(page_size=1)} >= {"sdk_alice", "bob"}  # every page
    acme.delete("sdk_alice")
    with pytest.raises(NotFoundError) as caught:
        acme.get("sdk_alice")
    assert caught.value.status == 404 and caught.value.code == "face_not_found" and caught.value.request_id
    assert acme.subjects.delete("bob").deleted_faces == ["sdk_bob"]


def test_each_refusal_raises_its_typed_error_with_the_code(acme, running_api, people, faces_dir, photos):
    photo = faces_dir / people[2].enrol_photo
    with pytest.raises(InvalidRequestError) as caught:
        acme.insert("sdk_bad", b"this is not a photo")
    assert caught.value.status == 422 and caught.value.code == "invalid_image"
    with pytest.raises(QualityRefusedError) as caught:
        acme.insert("sdk_wall", _blank_jpeg())
    assert caught.value.code == "no_face_detected" and caught.value.request_id
    with pytest.raises(QualityRefusedError) as caught:
        acme.insert("sdk_print", photos.antispoof("spoof_print_1.jpg"))
    assert caught.value.code == "quality_check_failed" and caught.value.failed_checks == ["spoof"]

    acme.insert("sdk_carol", photo)
    with pytest.raises(ConflictError) as caught:
        acme.insert("sdk_carol", photo)
    assert caught.value.code == "face_already_exists"
    assert acme.upsert("sdk_carol", photo).userOperationResult.operation == "UPSERT"

    with FaceAuthClient(running_api.url, "fa_not_a_key") as stranger, pytest.raises(AuthenticationError) as caught:
        stranger.get("sdk_carol")
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    with pytest.raises(PermissionDeniedError):
        acme.get("sdk_carol", tenant="other")  # another tenant's data: 403
    with FaceAuthClient(running_api.url, running_api.other_key) as other, pytest.raises(NotFoundError):
        other.get("sdk_carol")  # the other tenant's key sees its own (empty) tenant
    with FaceAuthClient(running_api.url, running_api.admin_key) as admin:
        with pytest.raises(InvalidRequestError) as caught:
            admin.get("sdk_carol")  # an admin key names the tenant it acts for
        assert caught.value.code == "validation_error" and caught.value.details["field"] == "tenant"
        assert admin.get("sdk_carol", tenant="acme").tenant == "acme"


def test_the_async_client_enrols_in_a_batch_searches_and_purges(running_api, people, faces_dir):
    async def scenario() -> None:
        async with AsyncFaceAuthClient(running_api.url, running_api.admin_key, tenant="batchco") as client:
            batch = await client.batch_insert(
                [(f"b{i}", faces_dir / p.enrol_photo, f"person{i}") for i, p in enumerate(people[:3])]
                + [("b_bad", b"not a photo", None)]
            )
            assert (batch.succeeded, batch.failed) == (3, 1)
            assert batch.results[3].error is not None and batch.results[3].error.code == "invalid_image"
            found = await client.search(faces_dir / people[1].probe_photo, group_by="subject")
            assert found.searchResult.matches[0].subject_id == "person1"
            subjects = [s.subject_id async for s in client.subjects.list(page_size=2)]
            assert subjects == ["person0", "person1", "person2"]
            link = await client.image_url("b0")
            assert link.url.startswith(running_api.url)
            clusters = await client.cluster(min_samples=1)
            assert sum(c.size for c in clusters.clusters) + len(clusters.noise) == 3
            detected = await client.detect(faces_dir / people[0].enrol_photo)
            assert detected.faces_count >= 1
            purged = await client.purge_tenant("batchco")
            assert purged.deleted.faces == 3
            assert [s async for s in client.subjects.list()] == []

    asyncio.run(scenario())


def test_an_unreachable_api_raises_a_connection_error_after_bounded_retries():
    from bench.servers.process import free_port

    client = FaceAuthClient(f"http://127.0.0.1:{free_port()}", "fa_x", retries=2)
    with client, pytest.raises(FaceAuthConnectionError) as caught:
        client.get("anyone")
    assert caught.value.status is None and caught.value.code == "connection_error"
