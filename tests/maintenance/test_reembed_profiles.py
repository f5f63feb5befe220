"""Moving a tenant between model profiles: `faceauth reembed --from-collection` re-embeds its faces with the
permissive profile's 128-d model into that profile's collection, and leaves the other tenants where they were."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.servers.services import FaceauthService, ml_env
from faceauth.api.app import create_app
from faceauth.cli import main
from faceauth.config import PROFILE_MATCH_THRESHOLDS
from tests.apitest import api_settings, enrol, match_ids, search, stored_keys, stored_rows
from tests.conftest import MLService

OLD, NEW = "faceauth_faces", "faces_permissive"


@pytest.fixture(scope="module")
def permissive_ml(spoof_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLService]:
    token = "test-internal-token"
    settings = {
        "ML_SERVICE_MODEL_PROFILE": "permissive",
        "ML_SERVICE_SPOOF_LOCAL_MODEL_PATH": str(spoof_model_path),
        "ML_SERVICE_AUTO_FETCH": "false",
    }
    log_path = tmp_path_factory.mktemp("ml-permissive") / "ml.log"
    service = FaceauthService("ml", ml_env(settings, token=token), log_level=None, log_path=log_path, ready_timeout=90)
    with service:
        yield MLService(service.url, token, service)


def _permissive_api(permissive_ml: MLService, data_dir: Path) -> TestClient:
    settings = api_settings(
        permissive_ml,
        data_dir,
        milvus_collection=NEW,
        milvus_embedding_dim=128,
        milvus_search_threshold=PROFILE_MATCH_THRESHOLDS["permissive"],
        auth_disabled=True,
    )
    return TestClient(create_app(settings))


@pytest.mark.slow
def test_reembed_moves_one_tenant_to_the_permissive_profile(
    make_api, ml_service, permissive_ml, people, photos, tmp_path, monkeypatch
):
    data_dir = tmp_path / "data"
    with make_api(data_dir, auth_disabled=True) as api:
        for i, person in enumerate(people[:2]):
            assert enrol(api, "acme", f"emp_{i}", photos(person.enrol_photo)).status_code == 200
        assert enrol(api, "other", "them", photos(people[2].enrol_photo)).status_code == 200
        old_key = stored_rows(api, "acme", "emp_0")[0].object_key

    monkeypatch.setenv("FACEAUTH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEAUTH_ML_INFERENCE_SERVICE_URL", permissive_ml.url)
    monkeypatch.setenv("FACEAUTH_ML_INFERENCE_AUTH_TOKEN", permissive_ml.token)
    monkeypatch.setenv("FACEAUTH_MILVUS_COLLECTION", NEW)
    monkeypatch.setenv("FACEAUTH_MILVUS_EMBEDDING_DIM", "128")
    move = ["reembed", "--from-collection", OLD, "--from-dim", "512", "--tenant", "acme"]
    assert main(move) == 0
    assert main(move) == 0  # nothing left of acme in the old collection: safe to run again

    with _permissive_api(permissive_ml, data_dir) as api:
        for i, person in enumerate(people[:2]):
            assert match_ids(search(api, "acme", photos(person.probe_photo)))[:1] == [f"emp_{i}"]
            rows = stored_rows(api, "acme", f"emp_{i}")
            assert len(rows) == 1 and rows[0].model_id.startswith("dlib/")
        assert stored_rows(api, "other", "them") == []  # not moved
        assert old_key not in stored_keys(api, "acme/")  # the old revision's image went with its row

    # The default profile's collection: only `other` is left.
    with make_api(data_dir, auth_disabled=True, milvus_collection=OLD, milvus_embedding_dim=512) as api:
        assert stored_rows(api, "acme", "emp_0") == []
        assert match_ids(search(api, "other", photos(people[2].probe_photo)))[:1] == ["them"]
