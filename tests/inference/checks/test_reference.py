"""The reference system's PyTorch checkpoints, end to end through the service: loaded at run time from a
`.pth` (torch extra) and converted to ONNX by `faceauth models convert`."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceauth.cli import main
from faceauth.inference.alignment import align_face
from faceauth.inference.app import create_app
from faceauth.inference.models import torchvision
from tests.conftest import require_module
from tests.inference.conftest import ml_settings


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch = require_module("torch")
    torch.manual_seed(7)
    model = torchvision.build_model("mobilenet_v2", 2)
    path = tmp_path_factory.mktemp("ckpt") / "quality_model.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _expected(path, crop: np.ndarray) -> float:
    clf = torchvision.TorchClassifier(path)
    return float(clf.predict_proba(torchvision.preprocess_imagenet([crop], 224))[0, 1])


def test_pth_checkpoint_serves_the_blur_check(checkpoint, spoof_model_path, tmp_path, photo_bytes, service):
    settings = ml_settings(spoof_model_path, tmp_path, blur_local_model_path=checkpoint)
    data = photo_bytes("img1.jpg")
    with TestClient(create_app(settings)) as c:
        ready = c.get("/readyz").json()["models"]["blur"]
        assert ready["state"] == "ready" and ready["path"] == str(checkpoint)
        body = c.post("/v1/blur", json={"image_b64": base64.b64encode(data).decode()}).json()
    # The same face, aligned to 224 px, through the checkpoint directly.
    image = service.pipeline.decode(data)
    face = service.pipeline.models.require("detector").detect(image.rgb)[0]
    assert body["probability"] == pytest.approx(
        _expected(checkpoint, align_face(image.rgb, face.landmarks, 224)), abs=1e-3
    )
    assert body["is_sharp"] == (body["probability"] < settings.blur_threshold)


def test_converted_onnx_serves_the_nsfw_check(checkpoint, spoof_model_path, tmp_path, photo_bytes, service):
    require_module("onnx")
    onnx_path = tmp_path / "nsfw.onnx"
    assert main(["models", "convert", str(checkpoint), str(onnx_path)]) == 0
    settings = ml_settings(spoof_model_path, tmp_path, nsfw_local_model_path=onnx_path)
    data = photo_bytes("img2.jpg")
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").json()["models"]["nsfw"]["state"] == "ready"
        body = c.post("/v1/nsfw", files={"file": ("x.jpg", data, "image/jpeg")}).json()
    whole = service.pipeline.decode(data).rgb
    assert body["probability"] == pytest.approx(_expected(checkpoint, whole), abs=1e-3)


@pytest.mark.parametrize("kind", ["nsfw", "blur"])
def test_a_foreign_onnx_file_is_refused_as_a_quality_model(spoof_model_path, tmp_path, kind):
    # The MiniFASNet file is a fine ONNX model, but neither NudeNet nor a converted torchvision classifier:
    # the slot fails loudly instead of silently running something else.
    settings = ml_settings(spoof_model_path, tmp_path, **{f"{kind}_local_model_path": spoof_model_path})
    with TestClient(create_app(settings)) as c:
        slot = c.get("/readyz").json()["models"][kind]
    assert slot["state"] == "failed" and spoof_model_path.name in slot["error"]


def test_positive_class_is_configurable_and_checked(checkpoint, spoof_model_path, tmp_path, photo_bytes):
    data = {"image_b64": base64.b64encode(photo_bytes("img2.jpg")).decode()}
    answers = {}
    for index in (0, 1):
        settings = ml_settings(spoof_model_path, tmp_path, nsfw_local_model_path=checkpoint, nsfw_positive_class=index)
        with TestClient(create_app(settings)) as c:
            answers[index] = c.post("/v1/nsfw", json=data).json()["probability"]
    assert answers[0] + answers[1] == pytest.approx(1.0, abs=2e-4)  # two classes: the two views complement
    settings = ml_settings(spoof_model_path, tmp_path, nsfw_local_model_path=checkpoint, nsfw_positive_class=5)
    with TestClient(create_app(settings)) as c:
        nsfw = c.get("/readyz").json()["models"]["nsfw"]
    assert nsfw["state"] == "failed" and "positive class 5" in nsfw["error"]
