"""`faceauth models convert`: a torchvision checkpoint to ONNX, checked against torch on photo-like images."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

from faceauth.inference.models import torchvision as tc
from faceauth.inference.tools import convert
from tests.inference.classifiers import photo_like_images, trained_like


@pytest.mark.torch
@pytest.mark.parametrize("arch", tc.ARCHS)
def test_convert_checkpoint_matches_torch_on_images(torch, onnx, tmp_path, arch):
    src, dst = tmp_path / f"{arch}.pth", tmp_path / "out" / f"{arch}.onnx"
    torch.save({"state_dict": trained_like(torch, arch, 2).state_dict()}, src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()

    info = convert.convert_checkpoint(src, dst)

    assert info["arch"] == arch and info["num_classes"] == 2 and info["onnx_path"] == str(dst)
    assert info["max_abs_diff"] < 1e-4
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # no temporary file left behind
    model = onnx.load(str(dst))
    assert {p.key: p.value for p in model.metadata_props} == {
        "faceauth.kind": "torchvision-classifier",
        "faceauth.arch": arch,
        "faceauth.num_classes": "2",
        "faceauth.input_size": "224",
        "faceauth.preprocess": "imagenet",
        "faceauth.source_sha256": sha,
    }
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and [d.dim_value for d in in_dims[1:]] == [3, 224, 224]
    assert out.type.tensor_type.shape.dim[0].dim_param and out.type.tensor_type.shape.dim[1].dim_value == 2

    batch = tc.preprocess_imagenet(photo_like_images())
    (logits,) = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"input": batch})
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    onnx_probs = e / e.sum(axis=1, keepdims=True)
    torch_probs = tc.TorchClassifier(src).predict_proba(batch)
    # The check is only meaningful if the model actually tells these images apart.
    assert np.abs(torch_probs - torch_probs[0]).max() > 1e-3
    np.testing.assert_allclose(onnx_probs, torch_probs, rtol=0, atol=1e-4)


@pytest.mark.torch
def test_convert_checkpoint_refuses_a_disagreeing_export(torch, onnx, tmp_path, monkeypatch):
    src, dst = tmp_path / "m.pth", tmp_path / "m.onnx"
    torch.save(tc.build_model("resnet18", 2).state_dict(), src)
    monkeypatch.setattr(convert, "VERIFY_TOLERANCE", 0.0)  # no difference is < 0, so verification must fail
    with pytest.raises(RuntimeError, match="disagrees"):
        convert.convert_checkpoint(src, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]
