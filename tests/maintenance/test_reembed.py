"""After an embedding-model change: search ignores the old vectors, readyz warns, `faceauth reembed` fixes it."""

from __future__ import annotations

from faceauth.cli import main
from faceauth.storage.records import FaceRecord
from tests.apitest import enrol, match_ids, search, stored_keys, stored_rows

OLD_MODEL = "buffalo_l/w600k_r50-0123456789ab"


def _enrol_with_old_model(api, tenant: str, face_id: str, image: bytes) -> None:
    """A face as an earlier deployment stored it: its image, and a vector labelled with another model.

    The vector is the one today's model makes of this photo, so a search that ignored the label would match it.
    """
    service = api.app.state.container
    key = f"{tenant}/{face_id}/0001700000000000-0ld0ld0ld0ld"
    record = FaceRecord(key, tenant, face_id, key, OLD_MODEL, 1_700_000_000_000)
    vector = api.portal.call(service.ml.analyze, image).embedding
    api.portal.call(service.objects.put, key, image, "image/jpeg")
    api.portal.call(service.index.add, record, vector)


def test_faceauth_reembed_brings_old_model_faces_back(make_api, ml_service, people, photos, tmp_path, monkeypatch):
    with make_api() as api:
        assert enrol(api, "acme", "emp_new", photos(people[0].enrol_photo)).status_code == 200
        _enrol_with_old_model(api, "acme", "emp_old", photos(people[1].enrol_photo))

        # the old vector is never compared with probes of the new model
        assert "emp_old" not in match_ids(search(api, "acme", photos(people[1].enrol_photo), threshold=0.0))
        ready = api.get("/readyz").json()
        assert ready["status"] == "ok"
        assert len(ready["warnings"]) == 1 and OLD_MODEL in ready["warnings"][0]

    monkeypatch.setenv("FACEAUTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACEAUTH_ML_INFERENCE_SERVICE_URL", ml_service.url)
    monkeypatch.setenv("FACEAUTH_ML_INFERENCE_AUTH_TOKEN", ml_service.token)
    assert main(["reembed"]) == 0
    assert main(["reembed"]) == 0  # nothing left to do: safe to run again

    with make_api() as api:
        assert match_ids(search(api, "acme", photos(people[1].probe_photo)))[:1] == ["emp_old"]
        assert match_ids(search(api, "acme", photos(people[0].probe_photo)))[:1] == ["emp_new"]
        rows = stored_rows(api, "acme", "emp_old")
        assert len(rows) == 1 and rows[0].model_id != OLD_MODEL
        assert stored_keys(api, "acme/emp_old/") == [rows[0].object_key]
        assert api.get("/readyz").json()["warnings"] == []
