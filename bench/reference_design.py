"""The reference design (the ZepIris two-service layout), rebuilt for the end-to-end benchmark.

Two small FastAPI apps, each run as its own process:

* ``ml`` -- the ML inference service. ``POST /v1/assess`` and ``POST /v1/embed`` take JSON ``{"image_b64": ...}``.
  Every check works the way a straightforward implementation of that contract does: it decodes the whole photo
  itself at full resolution (Pillow -> upright RGB numpy array) and does its own preprocessing. NSFW letterboxes
  the whole photo; anti-spoof, blur and the embedding each run the face detector on a 640x640 input (the photo
  fitted into the square and padded, as insightface's ``det_size=(640, 640)`` does) on their own decode.
  ``/v1/assess`` runs its three checks in parallel in a ``ThreadPoolExecutor``, as the reference's combined IQA
  does. Requests run the models off the event loop with ``asyncio.to_thread``. ONNX Runtime sessions are opened
  with ORT's default ``SessionOptions`` (no thread tuning: a thread per core per session, spinning allowed).
* ``api`` -- the Face API. ``POST /v1/faces/insert`` (to enrol a gallery) and ``POST /v1/faces/search`` take a
  multipart upload; the API reads it, base64-encodes it and calls ``/v1/assess`` and then ``/v1/embed`` through
  one shared synchronous ``httpx.Client`` (in a worker thread, so the event loop is never blocked). A photo
  that fails the assessment is refused (insert: 422; search: 200 with no matches, as the reference answers) and
  the embedding is not asked for. Vectors go to ``MilvusFaceIndex`` on an embedded milvus-lite file configured
  exactly as this project's Face API configures it; insert also writes the photo to a local folder.

The model *math* is this project's: the same ONNX files (SCRFD-500M, w600k_mbf, NudeNet 320n, MiniFASNetV2) and
the same blur classifier, through the same model classes, so both designs compute the same thing and a
throughput ratio measures the design, not the models. The *pipeline* is not this project's: no shared decode,
no reduced-resolution decode, no coarse detection, no micro-batching, no thread tuning, two HTTP calls per
request with base64 JSON bodies.

It is a fair rebuild: untuned, but not crippled (models loaded once, keep-alive connections, nothing blocks the
event loop, a photo that fails the assessment costs no embedding).

Run (from the project folder, in its environment)::

    uv run python -m bench.reference_design ml --port 8101
    uv run python -m bench.reference_design api --port 8100 --ml-url http://127.0.0.1:8101 --data-dir data/reference
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from faceauth.api.container import open_face_index
from faceauth.config import APISettings, MLSettings
from faceauth.inference.alignment import align_face
from faceauth.inference.artefacts import registry
from faceauth.inference.models.detector import Detection, ScrfdDetector
from faceauth.inference.models.embedder import ArcFaceEmbedder
from faceauth.inference.models.minifasnet import MiniFASNetSpoof, context_crop
from faceauth.inference.models.nudenet import NudeNetNsfw
from faceauth.inference.models.sharpness import SharpnessClassifier
from faceauth.storage.records import FaceRecord

DETECTION_SIZE = (640, 640)
MODEL_ID = "reference/w600k_mbf"  # one embedder: the index only needs a constant to filter on
COLLECTION = "reference_faces"


# --------------------------------------------------------------------------------------------- the ML service


def default_session(path: Path | str, **_: Any) -> ort.InferenceSession:
    """An ONNX Runtime session with the library's default options (what an untuned service gets)."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def decode_rgb(data: bytes) -> np.ndarray:
    """The whole photo, upright, as an RGB uint8 array (Pillow, full resolution, every time it is called)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HTTPException(status_code=422, detail=f"cannot decode image: {exc}") from None


class ReferenceModels:
    """The five models, loaded once; each check is a function of the photo's bytes alone."""

    def __init__(self, settings: MLSettings) -> None:
        self.settings = settings
        pack = registry.resolve_face_pack(settings.face_model, settings.model_dir)
        # Sessions with the library's defaults, not the service's tuned ones: what an untuned service gets.
        self.detector = ScrfdDetector(
            default_session(pack.detector), input_size=DETECTION_SIZE, score_threshold=settings.face_detection_threshold
        )
        self.embedder = ArcFaceEmbedder(default_session(pack.embedder), model_id=MODEL_ID)
        nsfw_path = settings.nsfw_local_model_path or registry.nudenet_model_path()
        spoof_path = settings.spoof_local_model_path or registry.default_spoof_path(settings.model_dir)
        self.nsfw = NudeNetNsfw(default_session(nsfw_path), name=nsfw_path.name)
        self.spoof = MiniFASNetSpoof(default_session(spoof_path), name=spoof_path.name)
        self.blur = SharpnessClassifier()

    def largest_face(self, rgb: np.ndarray) -> Detection | None:
        """The detector on a full 640x640 input; the largest face that is not too small, or None."""
        faces = self.detector.detect_batch([self.detector.model_input(rgb, full_size=True)])[0]
        area = float(rgb.shape[0] * rgb.shape[1])
        usable = [f for f in faces if f.area / area >= self.settings.face_area_threshold]
        return usable[0] if usable else None  # detections come largest first

    # -- the checks: each decodes the photo itself

    def nsfw_check(self, data: bytes) -> dict[str, Any]:
        p = float(self.nsfw.nsfw_probability([decode_rgb(data)])[0])
        return {"is_safe": p < self.settings.nsfw_threshold, "probability": round(p, 4)}

    def spoof_check(self, data: bytes) -> dict[str, Any] | None:
        rgb = decode_rgb(data)
        face = self.largest_face(rgb)
        if face is None:
            return None
        p = float(self.spoof.spoof_probability([context_crop(rgb, face.box)])[0])
        return {"is_spoof": p >= self.settings.spoof_threshold, "probability": round(p, 4)}

    def blur_check(self, data: bytes) -> dict[str, Any] | None:
        rgb = decode_rgb(data)
        face = self.largest_face(rgb)
        if face is None:
            return None
        p = float(self.blur.blur_probability(rgb, face.landmarks, face.box, 1.0))
        return {"is_sharp": p < self.settings.blur_threshold, "probability": round(p, 4)}

    def embed(self, data: bytes) -> dict[str, Any]:
        rgb = decode_rgb(data)
        face = self.largest_face(rgb)
        if face is None:
            return {"face_detected": False, "embedding": None, "embedding_dim": 512}
        vector = self.embedder.embed_aligned([align_face(rgb, face.landmarks)])[0]
        return {"face_detected": True, "embedding": [float(v) for v in vector], "embedding_dim": int(vector.size)}

    def assess(self, data: bytes) -> dict[str, Any]:
        """The three quality checks in parallel, as the reference's combined IQA runs them."""
        with ThreadPoolExecutor(max_workers=3) as pool:
            nsfw = pool.submit(self.nsfw_check, data)
            spoof = pool.submit(self.spoof_check, data)
            blur = pool.submit(self.blur_check, data)
            result = {"nsfw": nsfw.result(), "spoof": spoof.result(), "blur": blur.result()}
        face = result["spoof"] is not None and result["blur"] is not None
        passed = result["nsfw"]["is_safe"] and face and not result["spoof"]["is_spoof"] and result["blur"]["is_sharp"]
        return {"passed": bool(passed), **result, "face_detected": face}


class ImageRequest(BaseModel):
    image_b64: str


def _bytes(body: ImageRequest) -> bytes:
    try:
        return base64.b64decode(body.image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status_code=400, detail="image_b64 is not valid base64") from None


def create_ml_app(settings: MLSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.models = ReferenceModels(settings or MLSettings())
        yield

    app = FastAPI(title="reference design: ML service", lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}  # the lifespan has loaded every model before the first request is served

    @app.post("/v1/assess")
    async def assess(body: ImageRequest) -> dict[str, Any]:
        return await asyncio.to_thread(app.state.models.assess, _bytes(body))

    @app.post("/v1/embed")
    async def embed(body: ImageRequest) -> dict[str, Any]:
        return await asyncio.to_thread(app.state.models.embed, _bytes(body))

    return app


# --------------------------------------------------------------------------------------------- the Face API


class MLCalls:
    """The reference's ML client: one shared synchronous httpx.Client, two calls per photo."""

    def __init__(self, ml_url: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=ml_url, timeout=timeout)

    def assess_then_embed(self, data: bytes) -> tuple[dict[str, Any], list[float] | None]:
        body = {"image_b64": base64.b64encode(data).decode("ascii")}
        assessment = self._post("/v1/assess", body)
        if not assessment["passed"]:
            return assessment, None  # refused: no embedding needed
        return assessment, self._post("/v1/embed", body).get("embedding")

    def _post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        if response.status_code in (400, 413, 422):
            raise HTTPException(status_code=422, detail=f"the ML service refused the photo: {response.text[:200]}")
        if response.status_code != 200:
            raise HTTPException(status_code=503, detail=f"the ML service answered {response.status_code}")
        return response.json()

    def close(self) -> None:
        self.http.close()


def create_api_app(ml_url: str, data_dir: Path) -> FastAPI:
    # Same index settings as this project's Face API on its embedded default (only the folder differs).
    settings = APISettings(data_dir=data_dir, milvus_uri="", milvus_collection=COLLECTION)
    images = data_dir / "images"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        data_dir.mkdir(parents=True, exist_ok=True)
        app.state.index = open_face_index(settings)
        await app.state.index.open()
        app.state.ml = MLCalls(ml_url)
        try:
            yield
        finally:
            app.state.ml.close()
            await app.state.index.close()

    app = FastAPI(title="reference design: Face API", lifespan=lifespan)

    async def analyse(file: UploadFile) -> tuple[dict[str, Any], list[float] | None, bytes]:
        data = await file.read()
        if not data:
            raise HTTPException(status_code=400, detail="the uploaded file is empty")
        # The sync client runs in a worker thread: the event loop keeps serving other requests meanwhile.
        assessment, embedding = await run_in_threadpool(app.state.ml.assess_then_embed, data)
        return assessment, embedding, data

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/faces/insert")
    async def insert(
        id: Annotated[str, Form()], tenant: Annotated[str, Form()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        assessment, embedding, data = await analyse(file)
        if not assessment["passed"] or embedding is None:
            raise HTTPException(status_code=422, detail={"imageQualityAssessment": assessment})
        index = app.state.index
        if await index.find(tenant, id):
            raise HTTPException(status_code=409, detail=f"face {id!r} already exists")
        now_ms = int(time.time() * 1000)
        object_key = f"{tenant}/{id}/{now_ms}"
        path = images / f"{object_key}.jpg"
        await asyncio.to_thread(_write, path, data)
        record = FaceRecord(object_key, tenant, id, object_key, MODEL_ID, now_ms)
        await index.add(record, np.asarray(embedding, dtype=np.float32))
        return {
            "imageQualityAssessment": assessment,
            "userOperationResult": {"operation": "INSERT", "status": "success"},
        }

    @app.post("/v1/faces/search")
    async def search(
        tenant: Annotated[str, Form()],
        file: Annotated[UploadFile, File()],
        id: Annotated[str | None, Form()] = None,
        top_k: Annotated[int, Query(ge=1, le=100)] = 5,
        threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    ) -> dict[str, Any]:
        assessment, embedding, _ = await analyse(file)
        matches: list[dict[str, Any]] = []
        if assessment["passed"] and embedding is not None:
            found = await app.state.index.search(
                tenant,
                np.asarray(embedding, dtype=np.float32),
                model_id=MODEL_ID,
                limit=top_k,
                threshold=settings.milvus_search_threshold if threshold is None else threshold,
            )
            matches = [{"id": m.face_id, "score": round(m.score, 4)} for m in found]
        return {"id": id, "imageQualityAssessment": assessment, "searchResult": {"matches": matches}}

    return app


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reference_design", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="service", required=True)
    ml = sub.add_parser("ml", help="the ML inference service")
    api = sub.add_parser("api", help="the Face API")
    api.add_argument("--ml-url", required=True, help="where the ML service listens, e.g. http://127.0.0.1:8101")
    api.add_argument("--data-dir", type=Path, required=True, help="milvus-lite file and photos go here")
    for p in (ml, api):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    app = create_ml_app() if args.service == "ml" else create_api_app(args.ml_url, args.data_dir.resolve())
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
