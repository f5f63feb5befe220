"""torchvision-compatible checkpoints: architectures, loading, running, preprocessing.

torchvision itself cannot be imported here, so compatibility is pinned by torchvision's published parameter
counts (pytorch.org model docs, ``num_params``), its state-dict key names and shapes, and reference logits
that torchvision's own code produced for fixed weights.
"""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from faceauth.inference.models import torchvision as tc
from tests.inference.classifiers import photo_like_images, trained_like

# --------------------------------------------------------------------------------------------------
# Architectures match torchvision
# --------------------------------------------------------------------------------------------------

# torchvision's published num_params for the ImageNet (1000-class) weights.
TORCHVISION_NUM_PARAMS = {"mobilenet_v2": 3_504_872, "mobilenet_v3_large": 5_483_032, "resnet18": 11_689_512}

# Spot checks of torchvision state-dict names and shapes: stem, block layouts, SE, downsample, head.
TORCHVISION_KEYS = {
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_var": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),  # expand ratio 1: depthwise first, no expansion conv
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.bias": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),  # expansion 16 -> 6 * 16
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.3.running_mean": (24,),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
        "classifier.1.bias": (1000,),
    },
    "mobilenet_v3_large": {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),  # expanded == input: no expansion conv
        "features.1.block.1.0.weight": (16, 16, 1, 1),
        "features.2.block.0.0.weight": (64, 16, 1, 1),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),  # SE squeeze: make_divisible(72 // 4, 8) = 24
        "features.4.block.2.fc1.bias": (24,),
        "features.4.block.2.fc2.weight": (72, 24, 1, 1),
        "features.4.block.3.0.weight": (40, 72, 1, 1),
        "features.4.block.3.1.num_batches_tracked": (),
        "features.15.block.2.fc1.weight": (240, 960, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.weight": (1000, 1280),
    },
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer4.1.bn2.num_batches_tracked": (),
        "fc.weight": (1000, 512),
        "fc.bias": (1000,),
    },
}
ABSENT_KEYS = {
    "mobilenet_v2": ["features.19.0.weight", "features.1.conv.3.weight"],
    "mobilenet_v3_large": ["features.17.0.weight", "features.2.block.2.fc1.weight"],  # block 2 has no SE
    "resnet18": ["layer1.0.downsample.0.weight", "layer1.2.conv1.weight"],
}


@pytest.mark.torch
@pytest.mark.parametrize("arch", tc.ARCHS)
def test_parameter_count_matches_torchvision(torch, arch):
    model = tc.build_model(arch, 1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NUM_PARAMS[arch]


@pytest.mark.torch
@pytest.mark.parametrize("arch", tc.ARCHS)
def test_state_dict_uses_torchvision_names(torch, arch):
    state = tc.build_model(arch, 1000).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = TORCHVISION_KEYS[arch]
    assert {k: shapes.get(k) for k in expected} == expected
    assert not set(ABSENT_KEYS[arch]) & set(state)
    assert tc.detect_arch(state) == arch


@pytest.mark.torch
@pytest.mark.parametrize("arch", tc.ARCHS)
def test_batchnorm_settings_match_torchvision(torch, arch):
    # eps is not in the state dict, so a wrong value would load fine and silently change every prediction.
    want = (1e-3, 0.01) if arch == "mobilenet_v3_large" else (1e-5, 0.1)
    settings = {(m.eps, m.momentum) for m in tc.build_model(arch, 2).modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert settings == {want}


def _fill_deterministic(torch, model, seed: int = 0):
    """Set every parameter and BN statistic from a numpy generator seeded by its state-dict name.

    Name-keyed numpy draws give identical weights in any implementation with torchvision's names, on any
    torch version. Scales follow He init so activations neither vanish nor explode.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            for pname, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                if pname == "num_batches_tracked":
                    continue
                rng = np.random.default_rng([seed, zlib.crc32(f"{name}.{pname}".encode())])
                if isinstance(module, torch.nn.BatchNorm2d):
                    bounds = {"weight": (0.5, 1.5), "bias": (-0.2, 0.2), "running_mean": (-0.1, 0.1)}
                    arr = rng.uniform(*bounds.get(pname, (0.5, 2.0)), t.shape)  # running_var: (0.5, 2.0)
                elif pname == "bias":
                    arr = rng.uniform(-0.1, 0.1, t.shape)
                else:
                    gain = 2.0 if isinstance(module, torch.nn.Conv2d) else 1.0
                    arr = rng.standard_normal(t.shape) * np.sqrt(gain / np.prod(t.shape[1:]))
                t.copy_(torch.from_numpy(arr.astype(np.float32)))
    return model.eval()


# Logits of torchvision 0.29.2's own mobilenet_v2 / mobilenet_v3_large / resnet18 (num_classes=4), weights
# from _fill_deterministic(seed=0), input default_rng(123).standard_normal((2, 3, 96, 96)). Computed once
# outside this repo (torchvision cannot be imported here); they pin what key names cannot: activations
# (ReLU6, hard-swish, hard-sigmoid SE gate), padding, strides and residual wiring.
TORCHVISION_LOGITS = {
    "mobilenet_v2": [[1.42693, -0.17201, -2.30994, -1.29193], [1.44843, -0.59302, -1.92296, -0.62193]],
    "mobilenet_v3_large": [[-16.56217, -7.28795, 4.32153, 4.7123], [-17.21104, -6.56202, 0.83895, 4.79362]],
    "resnet18": [[5.22175, 14.80795, -33.67286, 0.59696], [6.43039, 14.37608, -30.986, -0.91642]],
}


@pytest.mark.torch
@pytest.mark.parametrize("arch", tc.ARCHS)
def test_forward_matches_torchvision_logits(torch, arch):
    model = _fill_deterministic(torch, tc.build_model(arch, 4))
    x = torch.from_numpy(np.random.default_rng(123).standard_normal((2, 3, 96, 96)).astype(np.float32))
    with torch.inference_mode():
        logits = model(x).numpy()
    want = np.array(TORCHVISION_LOGITS[arch])
    # Tolerance covers BLAS/conv-algorithm differences; a wrong activation moves logits by more than 1.
    np.testing.assert_allclose(logits, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


# --------------------------------------------------------------------------------------------------
# Loading checkpoints
# --------------------------------------------------------------------------------------------------

WRAPPERS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 7},
    "model_state_dict": lambda sd: {
        "model_state_dict": sd,
        "optimizer_state_dict": {"param_groups": [{"lr": 0.1}]},
    },
    "model": lambda sd: {"model": sd},
    "dataparallel": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "state_dict+dataparallel": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.torch
@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize(("arch", "num_classes"), [("mobilenet_v2", 2), ("mobilenet_v3_large", 3), ("resnet18", 5)])
def test_checkpoint_round_trip(torch, tmp_path, arch, num_classes, wrapper):
    original = trained_like(torch, arch, num_classes)
    path = tmp_path / "model.pth"
    torch.save(WRAPPERS[wrapper](original.state_dict()), path)

    loaded, meta = tc.load_checkpoint(path)

    assert meta["arch"] == arch
    assert meta["num_classes"] == num_classes
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not loaded.training
    want, got = original.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = torch.from_numpy(tc.preprocess_imagenet(photo_like_images()[:2]))
    with torch.inference_mode():
        assert torch.equal(loaded(x), original(x))


@pytest.mark.torch
def test_explicit_arch_must_fit_the_weights(torch, tmp_path):
    path = tmp_path / "blur.pth"
    torch.save(tc.build_model("resnet18", 2).state_dict(), path)
    assert tc.load_checkpoint(path, arch="resnet18")[1]["arch"] == "resnet18"
    with pytest.raises(ValueError, match="mobilenet_v2"):
        tc.load_checkpoint(path, arch="mobilenet_v2")


@pytest.mark.torch
def test_unknown_architectures_are_rejected(torch, tmp_path):
    with pytest.raises(ValueError, match="cannot recognise"):
        tc.detect_arch({"encoder.weight": torch.zeros(1), "head.weight": torch.zeros(2, 1)})
    resnet34_like = {**tc.build_model("resnet18", 2).state_dict(), "layer1.2.conv1.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="resnet18"):
        tc.detect_arch(resnet34_like)
    path = tmp_path / "not_weights.pth"
    torch.save({"epoch": 3, "note": "no tensors here"}, path)
    with pytest.raises(ValueError, match="state dict"):
        tc.load_checkpoint(path)


class _PlantsAFile:
    """Unpickling this creates a file: stands in for a malicious checkpoint."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.torch
def test_pickled_objects_are_refused(torch, tmp_path):
    full_module = tmp_path / "full_module.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), full_module)
    with pytest.raises(ValueError, match=r"state_dict\(\)"):
        tc.load_checkpoint(full_module)

    marker = tmp_path / "pwned"
    malicious = tmp_path / "malicious.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "extra": _PlantsAFile(marker)}, malicious)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        tc.load_checkpoint(malicious)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# Runtime
# --------------------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize(("arch", "num_classes"), [("mobilenet_v3_large", 2), ("mobilenet_v2", 4)])
def test_torch_classifier_returns_probabilities(torch, tmp_path, arch, num_classes):
    path = tmp_path / "m.pth"
    torch.save(trained_like(torch, arch, num_classes, seed=1).state_dict(), path)
    clf = tc.TorchClassifier(path)
    probs = clf.predict_proba(tc.preprocess_imagenet(photo_like_images()))
    assert (clf.arch, clf.num_classes) == (arch, num_classes)
    assert probs.shape == (3, num_classes) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        clf.predict_proba(np.zeros((3, 224, 224), np.float32))


# --------------------------------------------------------------------------------------------------
# Without torch
# --------------------------------------------------------------------------------------------------


def test_preprocess_imagenet_contract():
    red = np.zeros((100, 60, 3), np.uint8)
    red[..., 0] = 255
    gray = np.full((500, 400, 3), 128, np.uint8)
    out = tc.preprocess_imagenet([red, gray], input_size=64)
    assert out.shape == (2, 3, 64, 64) and out.dtype == np.float32
    mean, std = np.array(tc.IMAGENET_MEAN), np.array(tc.IMAGENET_STD)
    # RGB order, channels first: red lands in channel 0.
    np.testing.assert_allclose(out[0, :, 5, 5], (np.array([1.0, 0.0, 0.0]) - mean) / std, atol=1e-6)
    np.testing.assert_allclose(out[1, :, 30, 30], (128 / 255 - mean) / std, atol=1e-6)
    with pytest.raises(ValueError, match="RGB uint8"):
        tc.preprocess_imagenet([np.zeros((10, 10, 4), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        tc.preprocess_imagenet([np.zeros((10, 10, 3), np.float32)])


def test_module_imports_and_fails_clearly_without_torch():
    # Block torch/onnx in a fresh interpreter (a None entry in sys.modules makes the import fail).
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["onnx"] = None
        import numpy as np
        from faceauth.inference.models import torchvision as tc

        assert tc.preprocess_imagenet([np.zeros((8, 8, 3), np.uint8)]).shape == (1, 3, 224, 224)
        for call in (lambda: tc.build_model("resnet18", 2), lambda: tc.TorchClassifier("x.pth")):
            try:
                call()
            except RuntimeError as exc:
                assert "uv sync --extra torch" in str(exc), exc
            else:
                raise AssertionError("expected RuntimeError")
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
