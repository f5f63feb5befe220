"""ONNX Runtime sessions: the exact PRelu rewrite, provider selection (CUDA, TensorRT) and its fallback to CPU."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from faceauth.config import MLSettings
from faceauth.inference import rewrite, runtime
from faceauth.inference.artefacts import registry
from faceauth.inference.runtime import create_session, providers_for


def _prelu_model(slope: np.ndarray) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("PRelu", ["c", "a"], ["y"])]
    inits = [
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(slope.astype(np.float32), "a"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model: onnx.ModelProto | bytes | str, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_prelu_becomes_max_of_x_and_scaled_x_with_identical_output():
    slope = np.array([-0.8, 0.0, 0.25, 1.0]).reshape(4, 1, 1)  # negative, zero and the limit 1 all qualify
    model = _prelu_model(slope)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert rewrite.prelu_as_max(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Mul", "Max"]
    assert model.graph.node[-1].output[0] == "y"  # consumers of the PRelu output are untouched
    np.testing.assert_array_equal(_run(model, x), before)


def test_prelu_with_a_slope_above_one_is_kept():
    model = _prelu_model(np.array([0.5, 1.5, 0.1, 0.2]).reshape(4, 1, 1))
    assert rewrite.prelu_as_max(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "PRelu"]


def test_cpu_model_is_none_when_there_is_nothing_to_rewrite(tmp_path):
    path = tmp_path / "relu.onnx"
    model = _prelu_model(np.ones((4, 1, 1)) * 2)  # slope 2: nothing qualifies
    onnx.save(model, str(path))
    assert rewrite.cpu_model(path) is None
    assert rewrite.cpu_model(registry.vectron_model_dir() / "scrfd_500m_bnkps.onnx") is None  # no PRelu at all


@pytest.mark.parametrize(
    ("model", "shape", "scale"),
    [("w600k_mbf.onnx", (4, 3, 112, 112), 1.0), ("minifasnet", (4, 3, 80, 80), 255.0)],
)
def test_sessions_of_the_real_prelu_models_answer_exactly_as_before(model, shape, scale, spoof_model_path):
    path = registry.vectron_model_dir() / model if model.endswith(".onnx") else spoof_model_path
    x = (np.random.default_rng(2).random(shape, dtype=np.float32) * scale).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    plain = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    fast = create_session(path)
    name = plain.get_inputs()[0].name
    np.testing.assert_array_equal(fast.run(None, {name: x})[0], plain.run(None, {name: x})[0])
    for label, session in (("as exported", plain), ("rewritten", fast)):  # figures only: the machine is shared
        one = {name: x[:1]}
        session.run(None, one)
        started = time.perf_counter()
        for _ in range(20):
            session.run(None, one)
        print(f"\n{Path(path).name} {label}: {(time.perf_counter() - started) / 20 * 1000:.2f} ms per image")


# -- providers ------------------------------------------------------------------------------------------------


def test_cpu_is_just_the_cpu_provider():
    assert providers_for("cpu") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tensorrt", "tensorrt:0"])
def test_gpu_devices_fall_back_to_cpu_with_a_warning_when_onnxruntime_has_no_gpu(device, monkeypatch, caplog):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        assert providers_for(device) == ["CPUExecutionProvider"]
    assert "using CPU" in caplog.text
    if device.startswith("tensorrt"):
        assert "no TensorRT provider" in caplog.text


def test_a_session_for_tensorrt_runs_on_the_cpu_here(caplog):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT: the fallback is not what would run")
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        session = create_session(registry.vectron_model_dir() / "w600k_mbf.onnx", device="tensorrt:0")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "no TensorRT provider" in caplog.text


def test_tensorrt_comes_first_with_fp16_and_an_engine_cache_then_cuda_then_cpu(monkeypatch, tmp_path):
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    providers = providers_for("tensorrt:1", cache_dir=tmp_path / "trt")
    assert [p if isinstance(p, str) else p[0] for p in providers] == available
    trt, cuda = providers[0][1], providers[1][1]
    assert trt["device_id"] == 1 and cuda == {"device_id": 1}
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt") and (tmp_path / "trt").is_dir()


def test_tensorrt_caches_engines_under_the_model_dir_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("ML_SERVICE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    providers = providers_for("tensorrt")
    assert providers[0][1]["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert providers[1:] == ["CPUExecutionProvider"]  # no CUDA provider in this build: TensorRT, then CPU


def test_tensorrt_without_its_provider_uses_cuda(monkeypatch, caplog):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        providers = providers_for("tensorrt:2")
    assert providers == [("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]
    assert "trying CUDA" in caplog.text


@pytest.mark.parametrize("value", ["cpu", "cuda", "cuda:3", "tensorrt", "tensorrt:0"])
def test_device_setting_accepts_cpu_cuda_and_tensorrt(value):
    assert MLSettings(_env_file=None, ml_device=value).ml_device == value


@pytest.mark.parametrize("value", ["gpu", "tensorrt:x", "cuda0", "trt:0"])
def test_device_setting_refuses_anything_else(value):
    with pytest.raises(ValueError, match="tensorrt:N"):
        MLSettings(_env_file=None, ml_device=value)


def test_a_gpu_provider_that_does_not_start_is_reported(monkeypatch, caplog):
    """The build claims CUDA but it cannot start (here: this build has none): the session runs on the CPU, and
    the log says so for the model."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger=runtime.__name__), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime's own complaint about the provider, in some versions
        session = create_session(registry.vectron_model_dir() / "w600k_mbf.onnx", device="cuda:0")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "w600k_mbf.onnx: CUDAExecutionProvider did not start" in caplog.text
