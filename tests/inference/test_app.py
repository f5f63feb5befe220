"""Start-up: models that are fetched on first start, and what happens when fetching fails."""

from __future__ import annotations

from fastapi.testclient import TestClient

from faceauth.inference.app import create_app
from faceauth.inference.artefacts import registry
from faceauth.inference.artefacts.fetch import MIRROR_ENV
from tests.inference.conftest import ml_settings


def test_missing_reference_checkpoint_is_fetched_from_the_hub_once(spoof_model_path, tmp_path, server, monkeypatch):
    nudenet = registry.nudenet_model_path().read_bytes()
    server.files["/hub/acme/nudenet/resolve/main/320n.onnx"] = nudenet
    monkeypatch.setenv("HF_ENDPOINT", server.url("/hub"))
    target = tmp_path / "checkpoints" / "320n.onnx"
    settings = ml_settings(
        spoof_model_path, tmp_path, nsfw_local_model_path=target, nsfw_hf_repo_id="acme/nudenet", auto_fetch=True
    )
    for _ in range(2):  # the second start finds the file and asks for nothing
        with TestClient(create_app(settings)) as c:
            nsfw = c.get("/readyz").json()["models"]["nsfw"]
            assert nsfw["state"] == "ready" and nsfw["path"] == str(target)
    assert target.read_bytes() == nudenet
    assert server.requests == ["/hub/acme/nudenet/resolve/main/320n.onnx"]


def test_first_start_fetches_the_spoof_model_and_refuses_a_wrong_file(tmp_path, server, monkeypatch, spoof_model_path):
    # The mirror serves a different export than the pinned one: the pin refuses it, nothing is installed,
    # and the service still starts, with only the spoof model unavailable.
    server.files["/mirror/minifasnet_v2_80x80.onnx"] = spoof_model_path.read_bytes()
    monkeypatch.setenv(MIRROR_ENV, server.url("/mirror"))
    settings = ml_settings(spoof_model_path, tmp_path / "models", auto_fetch=True, spoof_local_model_path=None)
    with TestClient(create_app(settings)) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["models"]["spoof"]["state"] == "missing"
        assert ready["models"]["embedder"]["state"] == "ready"
    assert server.requests == ["/mirror/minifasnet_v2_80x80.onnx"]
    assert not registry.default_spoof_path(tmp_path / "models").exists()


def _models_with_pack(spoof_model_path, tmp_path, pack_name: str, links: dict[str, str]) -> dict:
    """/readyz's models for a pack folder whose files link to the wheel's ONNX files."""
    pack = tmp_path / "models" / pack_name
    pack.mkdir(parents=True)
    wheel = registry.vectron_model_dir()
    for name, target in links.items():
        (pack / name).symlink_to(wheel / target)
    settings = ml_settings(spoof_model_path, tmp_path / "models", face_model=pack_name)
    with TestClient(create_app(settings)) as c:
        return c.get("/readyz").json()["models"]


def test_a_pack_directory_in_insightface_layout_is_used(spoof_model_path, tmp_path):
    # A stand-in for a user's buffalo_l: the files under their pack names.
    links = {"det_10g.onnx": "scrfd_500m_bnkps.onnx", "w600k_r50.onnx": "w600k_mbf.onnx"}
    models = _models_with_pack(spoof_model_path, tmp_path, "buffalo_l", links)
    assert models["detector"]["path"].endswith("buffalo_l/det_10g.onnx")
    assert models["embedder"]["model_id"].startswith("buffalo_l/w600k_r50@9cc6e4a75f0e")


def test_an_unknown_pack_is_probed_by_model_shape(spoof_model_path, tmp_path):
    # c.onnx (a landmark model) is neither a detector nor an embedder: ignored.
    links = {"a.onnx": "w600k_mbf.onnx", "b.onnx": "scrfd_500m_bnkps.onnx", "c.onnx": "2d106det.onnx"}
    models = _models_with_pack(spoof_model_path, tmp_path, "vendor-pack", links)
    assert models["detector"]["path"].endswith("vendor-pack/b.onnx")
    assert models["embedder"]["path"].endswith("vendor-pack/a.onnx")
