"""`faceauth models convert`: a torchvision-classifier ``.pth`` checkpoint as an ONNX model the service serves
without torch (faceauth.inference.models.torchvision reads it back), checked against torch before it is written.

Needs the optional ``torch`` extra (torch and onnx).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceauth.inference.models.torchvision import CONVERTED_KIND, INSTALL_HINT, load_checkpoint, require_torch
from faceauth.inference.runtime import softmax

if TYPE_CHECKING:
    from torch import nn

ONNX_OPSET = 17
VERIFY_TOLERANCE = 1e-4  # max abs difference of softmax outputs, torch vs ONNX Runtime


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise RuntimeError(f"the onnx package is needed to export ONNX models; {INSTALL_HINT}") from exc
    return onnx


def export_onnx(
    module: nn.Module,
    out_path: str | os.PathLike[str],
    *,
    arch: str,
    num_classes: int,
    input_size: int = 224,
    source_sha256: str | None = None,
) -> Path:
    """Export ``module`` to ONNX: input ``input`` [batch, 3, S, S], output ``logits`` [batch, num_classes].

    Uses the TorchScript exporter (``dynamo=False``), which needs neither onnxscript nor torch.export; the
    batch axis is dynamic. Provenance and the preprocessing contract go into ``metadata_props``.
    """
    torch = require_torch()
    onnx = _require_onnx()
    out_path = Path(out_path)
    module.eval()
    device = next(module.parameters()).device
    dummy = torch.zeros(2, 3, input_size, input_size, device=device)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but that one needs onnxscript,
        # which is not a dependency; for these plain CNNs both give the same graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(out_path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    model = onnx.load(str(out_path))
    meta = {
        "faceauth.kind": CONVERTED_KIND,
        "faceauth.arch": arch,
        "faceauth.num_classes": str(num_classes),
        "faceauth.input_size": str(input_size),
        "faceauth.preprocess": "imagenet",
    }
    if source_sha256:
        meta["faceauth.source_sha256"] = source_sha256
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


def convert_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    arch: str | None = None,
    *,
    input_size: int = 224,
) -> dict[str, Any]:
    """Convert a ``.pth`` checkpoint to ONNX and check that ONNX Runtime reproduces torch.

    The ONNX file is written next to ``dst`` and moved into place only once torch and ONNX Runtime agree
    (max abs difference of softmax < 1e-4 on a random batch); otherwise RuntimeError and no ``dst``.
    Returns the checkpoint meta plus ``onnx_path``, ``opset`` and ``max_abs_diff``.
    """
    torch = require_torch()
    import onnxruntime as ort

    module, meta = load_checkpoint(src, arch)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.partial", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx(
            module,
            tmp,
            arch=meta["arch"],
            num_classes=meta["num_classes"],
            input_size=input_size,
            source_sha256=meta["sha256"],
        )
        # A batch size other than the export's 2 also proves the batch axis is really dynamic.
        batch = np.random.default_rng(0).standard_normal((3, 3, input_size, input_size)).astype(np.float32)
        with torch.inference_mode():
            expected = torch.softmax(module(torch.from_numpy(batch)), dim=1).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"input": batch})
        diff = float(np.abs(softmax(logits) - expected).max())
        if not diff < VERIFY_TOLERANCE:
            raise RuntimeError(
                f"ONNX Runtime disagrees with torch on {src}: max |softmax diff| = {diff:.2e} "
                f"(tolerance {VERIFY_TOLERANCE:.0e}); not writing {dst}"
            )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return {**meta, "onnx_path": str(dst), "opset": ONNX_OPSET, "max_abs_diff": diff}
