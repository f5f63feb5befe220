"""aligned=true (a pre-cropped face: no anti-spoofing) is an admin's decision: off for tenant keys unless the key
was made with allow_aligned or the tenant is in FACEAUTH_ALIGNED_TENANTS; admin keys always may."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceauth.auth.principal import Principal
from faceauth.kit.errors import AppError
from tests.apitest import new_key
from tests.photos.aligned import aligned_crop


def _insert(api, token: str, face_id: str, crop: bytes):
    return api.post(
        "/v1/faces/insert",
        data={"id": face_id, "tenant": "acme", "aligned": "true"},
        files={"file": ("c.png", crop)},
        headers={"X-Api-Key": token},
    )


def test_tenant_keys_may_not_send_aligned_photos_unless_allowed(make_api, people, photos):
    with make_api() as api:  # the client's own key is an admin key
        crop = aligned_crop(api, photos(people[0].enrol_photo))
        plain = new_key(api, "acme")
        for path, data in (
            ("/v1/faces/insert", {"id": "c1", "tenant": "acme"}),
            ("/v1/faces/upsert", {"id": "c1", "tenant": "acme"}),
            ("/v1/faces/search", {"tenant": "acme"}),
            ("/v1/faces/verify", {"tenant": "acme", "reference_id": "c1"}),
            ("/v1/faces/batch/insert", {"tenant": "acme", "ids": "c1"}),
        ):
            field = "probes" if path.endswith("verify") else "files" if "batch" in path else "file"
            r = api.post(
                path,
                data={**data, "aligned": "true"},
                files={field: ("c.png", crop)},
                headers={"X-Api-Key": plain},
            )
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "aligned_not_allowed" and r.json()["requestId"]
        # Without aligned=true the same key enrols (the refusal is about aligned, not the key).
        r = api.post(
            "/v1/faces/insert",
            data={"id": "full", "tenant": "acme"},
            files={"file": ("p.jpg", photos(people[0].enrol_photo))},
            headers={"X-Api-Key": plain},
        )
        assert r.status_code == 200, r.text

        _, allowed = api.portal.call(
            lambda: api.app.state.container.key_store.create("acme", "cropper", allow_aligned=True)
        )
        assert _insert(api, allowed, "c2", crop).status_code == 200
        assert (
            api.post(
                "/v1/faces/insert",
                data={"id": "c3", "tenant": "acme", "aligned": "true"},
                files={"file": ("c.png", crop)},
            ).status_code
            == 200
        )  # admin key


def test_a_tenant_switch_allows_every_key_of_that_tenant(make_api, people, photos):
    with make_api(aligned_tenants="acme, beta") as api:
        crop = aligned_crop(api, photos(people[0].enrol_photo))
        assert _insert(api, new_key(api, "acme"), "c1", crop).status_code == 200
        other = api.post(
            "/v1/faces/insert",
            data={"id": "c1", "tenant": "gamma", "aligned": "true"},
            files={"file": ("c.png", crop)},
            headers={"X-Api-Key": new_key(api, "gamma")},
        )
        assert other.status_code == 403 and other.json()["error"]["code"] == "aligned_not_allowed"


def test_the_one_enforcement_function():
    Principal(None, None).allow_aligned_photos()  # admin
    Principal("k", "acme", allow_aligned=True).allow_aligned_photos()
    Principal("k", "acme").allow_aligned_photos(tenant_allows=True)  # the tenant's policy says yes
    for tenant_allows in (None, False):
        with pytest.raises(AppError) as refused:
            Principal("k", "acme").allow_aligned_photos(tenant_allows=tenant_allows)
        assert refused.value.status == 403 and refused.value.code == "aligned_not_allowed"


def test_keys_create_allow_aligned(tmp_path):
    env = {"FACEAUTH_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "faceauth.cli", "keys"]
    made = subprocess.run(
        [*cli, "create", "--tenant", "acme", "--allow-aligned"], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert "may send aligned=true" in made.stdout
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "tenant:acme +aligned" in listed.stdout
