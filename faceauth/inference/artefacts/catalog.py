"""Catalog of downloadable model artifacts, with pinned checksums and licences.

Every entry says where a model comes from, what lands on disk and how to check it:

* ``kind="zip"``: ``url`` is an archive; it is unpacked into ``<model_dir>/<name>/`` (the
  InsightFace ``~/.insightface/models/<pack>/`` layout; a single top-level folder in the
  archive is flattened away).
* ``kind="file"``: ``url`` is a base URL; each listed file is downloaded from
  ``<url>/<file.source or file.name>`` into ``<model_dir>/<name>/<file.name>``.

Pins: ``Artifact.sha256`` pins a whole archive; ``ModelFile.sha256``/``size`` pin a file on
disk. An artifact is *pinned* when its archive has a sha256, or when every listed file
has one. ``fetch`` refuses unpinned artifacts unless explicitly allowed.

Where the values come from (public code, read through a code index; each value was
found in at least one of these, most in several unrelated projects that agree):

* [VX] Visionatrix/Visionatrix ``visionatrix/basic_node_list.py``: ``buffalo_l.zip`` and
  ``antelopev2.zip`` sha256 and byte size, and the sha256 of every ONNX file in both.
* [FA] SwamarpanRoy/face_attendance ``tools/fetch_models.py``: ``buffalo_s.zip`` sha256,
  and ``det_500m.onnx``/``w600k_mbf.onnx`` sha256 (identical in buffalo_s and buffalo_sc).
* [UF] yakhyo/uniface ``uniface/constants.py``: the same per-file sha256 for
  ``w600k_mbf``, ``w600k_r50``, ``det_10g``/``scrfd_10g_bnkps``, ``det_500m``,
  ``genderage`` and ``2d106det``.
* [TV] rodfileto/trackid-vision ``scripts/fetch-runtime-deps.sh``: AuraFace
  ``glintr100.onnx`` and ``scrfd_10g_bnkps.onnx`` sha256 from ``fal/AuraFace-v1``; it also
  notes that the SCRFD file there is InsightFace's non-commercial detector.
* [IX] several other public download scripts and provenance notes found by exact-string
  search on the hashes above (their repository names are not shown by the index): archive
  sizes (buffalo_s 127,607,557 B), per-file byte sizes, the archive layouts (buffalo_l is
  flat, antelopev2 has an ``antelopev2/`` folder), and the AuraFace revision
  ``af6d057c9b0ec4071d4c49c80e3539258798b609`` with ``glintr100.onnx`` = 260,694,151 B.
* [SH] this project's ``shared/models/minifasnet_v2_80x80.onnx`` (not in the repository):
  sha256 and size measured from that file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

CHUNK_SIZE = 1 << 20  # 1 MiB

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

INSIGHTFACE_LICENSE = (
    "InsightFace pretrained weights: non-commercial research use only "
    "(the InsightFace code is MIT; the weights are not)"
)
INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
AURAFACE_REVISION = "af6d057c9b0ec4071d4c49c80e3539258798b609"


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(value: str | None, what: str) -> None:
    if value is not None and not _SHA256_RE.match(value):
        raise ValueError(f"{what}: sha256 must be 64 lowercase hex digits, got {value!r}")


def _check_plain_name(value: str, what: str) -> None:
    if not value or value in {".", ".."} or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{what}: {value!r} must be a plain file name")


@dataclass(frozen=True)
class ModelFile:
    """One file of an installed artifact, as it must look on disk."""

    name: str
    sha256: str | None
    size: int | None = None
    # Path of the file under ``Artifact.url`` when it differs from ``name`` (kind="file").
    source: str | None = None

    def __post_init__(self) -> None:
        _check_plain_name(self.name, "ModelFile.name")
        _check_sha256(self.sha256, f"ModelFile {self.name}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"ModelFile {self.name}: size must be >= 0")
        if self.source is not None:
            parts = PurePosixPath(self.source).parts
            if not parts or self.source.startswith("/") or ".." in parts:
                raise ValueError(f"ModelFile {self.name}: bad source {self.source!r}")


@dataclass(frozen=True)
class Artifact:
    """A downloadable model pack or set of files."""

    name: str
    kind: Literal["zip", "file"]
    url: str
    sha256: str | None
    files: tuple[ModelFile, ...]
    license: str
    description: str
    # Byte size of the archive (kind="zip"), checked before hashing when known.
    size: int | None = None

    def __post_init__(self) -> None:
        _check_plain_name(self.name, "Artifact.name")
        if self.kind not in ("zip", "file"):
            raise ValueError(f"Artifact {self.name}: kind must be 'zip' or 'file'")
        if self.kind == "file" and self.sha256 is not None:
            raise ValueError(f"Artifact {self.name}: a 'file' artifact pins its files, not itself")
        if self.kind == "file" and not self.files:
            raise ValueError(f"Artifact {self.name}: a 'file' artifact needs at least one file")
        _check_sha256(self.sha256, f"Artifact {self.name}")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"Artifact {self.name}: duplicate file names")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"Artifact {self.name}: url must be http(s)")

    @property
    def pinned(self) -> bool:
        """True when the download can be checked against at least one known hash per byte."""
        if self.kind == "zip" and self.sha256 is not None:
            return True
        return bool(self.files) and all(f.sha256 is not None for f in self.files)

    @property
    def archive_name(self) -> str:
        """File name of the archive at its URL (kind="zip"), e.g. ``buffalo_l.zip``."""
        name = PurePosixPath(urlsplit(self.url).path).name
        return name or f"{self.name}.zip"

    def mirror_names(self) -> tuple[str, ...]:
        """The file names a ``FACEAUTH_MODEL_MIRROR`` directory must serve for this artifact."""
        if self.kind == "zip":
            return (self.archive_name,)
        return tuple(f.name for f in self.files)


_ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(
        name="buffalo_l",
        kind="zip",
        url=f"{INSIGHTFACE_RELEASE}/buffalo_l.zip",
        # [VX] (hash and size), agreed by [IX]. The archive is flat (files at its root).
        sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
        size=288_621_354,
        files=(
            # SCRFD-10GF detector (5 landmarks). [VX][UF]
            ModelFile("det_10g.onnx", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91", 16_923_827),
            # ArcFace ResNet50 on WebFace600K, 512-d. [VX][UF]
            ModelFile(
                "w600k_r50.onnx",
                "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
                174_383_860,
            ),
            # 3D 68-point landmarks. [VX]
            ModelFile("1k3d68.onnx", "df5c06b8a0c12e422b2ed8947b8869faa4105387f199c477af038aa01f9a45cc", 143_607_619),
            # 2D 106-point landmarks. [VX][UF]
            ModelFile("2d106det.onnx", "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf", 5_030_888),
            # Gender/age. [VX][UF]
            ModelFile(
                "genderage.onnx",
                "4fde69b1c810857b88c64a335084f1c3fe8f01246c9a191b48c7bb756d6652fb",
                1_322_532,
            ),
        ),
        license=INSIGHTFACE_LICENSE,
        description="InsightFace buffalo_l: SCRFD-10GF detector + ArcFace R50 (WebFace600K), 512-d",
    ),
    Artifact(
        name="antelopev2",
        kind="zip",
        url=f"{INSIGHTFACE_RELEASE}/antelopev2.zip",
        # [VX] (hash and size), agreed by [IX]. Files sit in an antelopev2/ folder (flattened).
        sha256="8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5",
        size=360_662_982,
        files=(
            # SCRFD-10GF, byte-identical to buffalo_l's det_10g.onnx. [VX][UF]
            ModelFile(
                "scrfd_10g_bnkps.onnx",
                "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
                16_923_827,
            ),
            # ArcFace ResNet100 on Glint360K, 512-d. [VX]
            ModelFile(
                "glintr100.onnx",
                "4ab1d6435d639628a6f3e5008dd4f929edf4c4124b1a7169e1048f9fef534cdf",
                260_665_334,
            ),
            ModelFile("1k3d68.onnx", "df5c06b8a0c12e422b2ed8947b8869faa4105387f199c477af038aa01f9a45cc", 143_607_619),
            ModelFile("2d106det.onnx", "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf", 5_030_888),
            ModelFile(
                "genderage.onnx",
                "4fde69b1c810857b88c64a335084f1c3fe8f01246c9a191b48c7bb756d6652fb",
                1_322_532,
            ),
        ),
        license=INSIGHTFACE_LICENSE,
        description="InsightFace antelopev2: SCRFD-10GF detector + ArcFace R100 (Glint360K), 512-d",
    ),
    Artifact(
        name="buffalo_s",
        kind="zip",
        url=f"{INSIGHTFACE_RELEASE}/buffalo_s.zip",
        # Hash: [FA], agreed by [IX]. Size: [IX].
        sha256="d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e",
        size=127_607_557,
        files=(
            # SCRFD-500MF detector (5 landmarks). [FA][UF]
            ModelFile("det_500m.onnx", "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a", 2_524_817),
            # ArcFace MobileFaceNet on WebFace600K, 512-d. [FA][UF]
            ModelFile(
                "w600k_mbf.onnx",
                "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                13_616_099,
            ),
            # The pack also holds landmark and gender/age models; they are installed too
            # (covered by the archive pin) but have no per-file pin we could confirm.
        ),
        license=INSIGHTFACE_LICENSE,
        description="InsightFace buffalo_s: SCRFD-500MF detector + ArcFace MobileFaceNet (WebFace600K)",
    ),
    Artifact(
        name="auraface",
        kind="file",
        # Pinned to a Hugging Face revision so the bytes cannot drift under "main". [IX]
        url=f"https://huggingface.co/fal/AuraFace-v1/resolve/{AURAFACE_REVISION}",
        sha256=None,
        files=(
            # AuraFace recognizer (glintr100 architecture, Apache-2.0 weights), 512-d. [TV], size [IX]
            ModelFile(
                "glintr100.onnx",
                "a7933ea5330113b01c9b60351d8f4c33003f145d8470ac5f0e52ee2effe25c60",
                260_694_151,
            ),
            # The detector shipped in the same repository: byte-identical to InsightFace's
            # det_10g.onnx, so InsightFace's non-commercial terms apply to it. [TV][UF]
            ModelFile(
                "scrfd_10g_bnkps.onnx",
                "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
                16_923_827,
            ),
        ),
        license=(
            "glintr100.onnx: Apache-2.0 (fal/AuraFace-v1 model card); scrfd_10g_bnkps.onnx is "
            "InsightFace's SCRFD-10GF detector: non-commercial research use only"
        ),
        description="AuraFace-v1 recognizer (commercially usable weights) + SCRFD-10GF detector, 512-d",
    ),
    Artifact(
        name="minifasnet_v2",
        kind="file",
        # The Silent-Face MiniFASNetV2 weights as exported by yakhyo/face-anti-spoofing (release "weights").
        # The same pin (sha256 and size) appears in several independent projects that download it, e.g.
        # yakhyo/uniface uniface/constants.py and LocalAI's Makefile. Contract (as the uniface code reads it):
        # input [N,3,80,80] raw BGR 0..255, crop scale 2.7, output 3 logits, softmax index 1 = live —
        # identical to the copy CI uses from shared/ (a different export of the same weights, sha256 ef25c819...).
        url="https://github.com/yakhyo/face-anti-spoofing/releases/download/weights",
        sha256=None,
        files=(
            ModelFile(
                "minifasnet_v2_80x80.onnx",
                "b32929adc2d9c34b9486f8c4c7bc97c1b69bc0ea9befefc380e4faae4e463907",
                1_743_581,
                source="MiniFASNetV2.onnx",
            ),
        ),
        license="Apache-2.0 (Silent-Face-Anti-Spoofing MiniFASNetV2 weights)",
        description="MiniFASNetV2 passive anti-spoof, 80x80 input (crop scale 2.7)",
    ),
)

CATALOG: dict[str, Artifact] = {artifact.name: artifact for artifact in _ARTIFACTS}
