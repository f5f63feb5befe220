"""Shared fixtures. Test data (real face photos, the anti-spoof model) come from `FACEAUTH_SHARED_DIR`.

Outside CI a missing data folder skips the tests that need it; in CI (env `CI` set) it fails them, so a
broken CI setup can never pass by skipping.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required test input missing in CI: {reason}")
    pytest.skip(reason)


def require_module(name: str):
    """Import a module of the optional `torch` extra: skip if absent, fail if FACEAUTH_REQUIRE_TORCH=1."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("FACEAUTH_REQUIRE_TORCH") == "1":
            pytest.fail(f"FACEAUTH_REQUIRE_TORCH=1 but {name!r} cannot be imported: {exc}")
        pytest.skip(f"optional 'torch' extra not installed ({name})")


@cache
def _shared_dir() -> Path | None:
    value = os.environ.get("FACEAUTH_SHARED_DIR")
    return Path(value).resolve() if value else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared_dir()
    require(path is not None and (path / "faces").is_dir(), "FACEAUTH_SHARED_DIR with faces/ is not set")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "faces" / "deepface"


@pytest.fixture(scope="session")
def spoof_model_path(shared_dir: Path) -> Path:
    path = Path(
        os.environ.get("ML_SERVICE_SPOOF_LOCAL_MODEL_PATH") or shared_dir / "models" / "minifasnet_v2_80x80.onnx"
    )
    require(path.is_file(), f"anti-spoof model not found at {path}")
    return path


@dataclass(frozen=True)
class LabelledPair:
    left: str
    right: str
    same: bool


@pytest.fixture(scope="session")
def labelled_pairs(faces_dir: Path) -> list[LabelledPair]:
    with open(faces_dir / "master.csv", newline="") as fh:
        return [LabelledPair(r["file_x"], r["file_y"], r["Decision"].strip() == "Yes") for r in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def photo_bytes(faces_dir: Path):
    @cache
    def read(name: str) -> bytes:
        return (faces_dir / name).read_bytes()

    return read
