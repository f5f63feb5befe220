"""The model profiles side by side on the same photos: `default` (InsightFace SCRFD-500M + ArcFace MobileFaceNet,
NudeNet) against `permissive` (dlib's HOG detector with its 5-point predictor and ResNet descriptor, no NSFW).

For each profile, in this order (one profile's models loaded at a time):

* **detection**: the share of photos with a face, on three sets made from the same photos of ``faces/deepface``:
  the photos as they are; *frame-filling* crops (a square around the face, 1.25x its box: a kiosk selfie whose
  face fills the frame); *small* faces (the photo shrunk so the face box is 48 px wide, on a 640x480 grey
  canvas: about the service's area threshold of 1 %). The crops are made from the *default* detector's largest
  face on the full photo, and both profiles get the same crops. Counted: photos with a face detected at all, and
  photos the service embeds (a usable face: detected and above the area threshold).
* **labelled pairs** (``master.csv``): the lowest same-person and highest different-person cosine, the margin,
  the EER and its threshold, FMR/FNMR at the profile's calibrated threshold (``PROFILE_MATCH_THRESHOLDS``),
  all as ``python -m bench.calibrate`` computes them;
* **anti-spoof with the profile's boxes**: the genuine photos (every deepface photo with a face, and
  ``antispoof/live_1.jpg``) the anti-spoof check refuses, and whether ``spoof_print_1.jpg`` is refused;
* **speed through both services** (``--http``): ``faceauth ml`` and ``faceauth api`` started on free ports
  with the profile, the gallery enrolled, then the median and p95 of sequential ``POST /v1/analyze`` (the ML
  service) and ``POST /v1/faces/search`` (the Face API) over the deepface photos, one request at a time.

Run::

    FACEAUTH_SHARED_DIR=../shared ML_SERVICE_SPOOF_LOCAL_MODEL_PATH=../shared/models/minifasnet_v2_80x80.onnx \\
        uv run python -m bench.profiles --http --json bench-results/profiles.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.calibrate import equal_error_rate, rates_at, score_pairs
from bench.photos import read_pairs
from faceauth.config import PROFILE_MATCH_THRESHOLDS, load_ml_settings

PROFILES = ("default", "permissive")
# The face's box width in the small-face set: on the 640x480 canvas its box covers just over the service's
# area threshold of 1 % (a 48 px wide box is about 60 px tall).
SMALL_FACE_PX = 48
CANVAS = (640, 480)


def shared_dir() -> Path:
    value = os.environ.get("FACEAUTH_SHARED_DIR")
    if not value:
        raise SystemExit("set FACEAUTH_SHARED_DIR to the folder that holds faces/deepface")
    return Path(value)


def encode(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def derived_sets(photos: dict[str, bytes]) -> dict[str, dict[str, bytes]]:
    """Frame-filling and small-face versions of each photo, from the default detector's largest face."""
    from faceauth.inference.imaging import decode_image
    from faceauth.inference.modelset import ModelSet

    detector = ModelSet.load(load_ml_settings(model_profile="default", nsfw_enabled=False)).require("detector")
    filling, small = {}, {}
    for name, data in photos.items():
        rgb = decode_image(data, max_pixels=40_000_000).rgb
        faces = detector.detect(rgb)
        if not faces:
            continue
        x1, y1, x2, y2 = faces[0].box
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.25 * max(x2 - x1, y2 - y1)
        h, w = rgb.shape[:2]
        a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        filling[name] = encode(rgb[b : int(min(h, cy + side / 2)), a : int(min(w, cx + side / 2))])
        factor = SMALL_FACE_PX / max(x2 - x1, 1.0)
        shrunk = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        canvas = np.full((CANVAS[1], CANVAS[0], 3), 128, np.uint8)
        sh, sw = min(shrunk.shape[0], CANVAS[1]), min(shrunk.shape[1], CANVAS[0])
        canvas[:sh, :sw] = shrunk[:sh, :sw]
        small[name] = encode(canvas)
    return {"photos": photos, "frame_filling": filling, "small_faces": small}


def measure_quality(profile: str, sets: dict[str, dict[str, bytes]], shared: Path) -> dict[str, Any]:
    from faceauth.inference.modelset import ModelSet
    from faceauth.inference.pipeline import Pipeline

    settings = load_ml_settings(model_profile=profile)
    models = ModelSet.load(settings)
    pipeline = Pipeline(models, settings)
    out: dict[str, Any] = {"models": {n: s.public() for n, s in models.slots.items()}, "detection": {}}
    for set_name, photos in sets.items():
        found, detected = [], []
        for name, data in photos.items():
            findings = pipeline.analyze(data, frozenset({"embed"}))
            if findings.faces:
                detected.append(name)
            if findings.embedding is not None:
                found.append(name)
        missed = sorted(set(photos) - set(found))
        out["detection"][set_name] = {
            "found": len(found),
            "detected": len(detected),
            "of": len(photos),
            "missed": missed,
        }

    vectors, spoof_refused, timings = {}, [], []
    for name, data in sets["photos"].items():
        started = time.perf_counter()
        findings = pipeline.analyze(data, frozenset({"embed", "spoof", "blur"}))
        timings.append((time.perf_counter() - started) * 1000)
        if findings.embedding is None:
            continue
        vectors[name] = findings.embedding.astype(np.float64)
        if findings.probabilities.get("spoof", 0.0) >= settings.spoof_threshold:
            spoof_refused.append(name)
    antispoof = {}
    for name in ("live_1.jpg", "spoof_print_1.jpg"):
        findings = pipeline.analyze((shared / "faces" / "antispoof" / name).read_bytes(), frozenset({"spoof"}))
        p = findings.probabilities.get("spoof")
        antispoof[name] = {"p_spoof": None if p is None else round(p, 4), "refused": p is not None and p >= 0.5}
    pairs = read_pairs(shared / "faces" / "deepface" / "master.csv")
    scored, excluded = score_pairs(pairs, vectors)
    same = np.array([s.score for s in scored if s.pair.same])
    different = np.array([s.score for s in scored if not s.pair.same])
    threshold = PROFILE_MATCH_THRESHOLDS[profile]
    out["pairs"] = {
        "scored": len(scored),
        "excluded": len(excluded),
        "same_min": round(float(same.min()), 4),
        "different_max": round(float(different.max()), 4),
        "margin": round(float(same.min() - different.max()), 4),
        "eer": equal_error_rate(same, different),
        "at_profile_threshold": rates_at(same, different, threshold),
    }
    out["spoof"] = {"genuine_refused": spoof_refused, "genuine_of": len(vectors), **antispoof}
    out["in_process_ms_median"] = round(statistics.median(timings), 1)
    return out


def measure_http(profile: str, photos: dict[str, bytes], shared: Path) -> dict[str, Any]:
    import httpx

    from bench.servers.services import TOKEN, FaceauthService, api_env, ml_env, spoof_model_env

    work = Path(tempfile.mkdtemp(prefix=f"profiles-{profile}-"))
    ml_settings = {"ML_SERVICE_MODEL_PROFILE": profile, "ML_SERVICE_AUTO_FETCH": "false", **spoof_model_env(shared)}
    ml = FaceauthService("ml", ml_env(ml_settings), log_path=work / "ml.log", ready_timeout=120)
    with ml:
        dim = httpx.get(f"{ml.url}/readyz").json()["embedding_dim"]
        api_settings = {
            "FACEAUTH_AUTH_DISABLED": "true",
            "FACEAUTH_MILVUS_EMBEDDING_DIM": str(dim),
            "FACEAUTH_MILVUS_SEARCH_THRESHOLD": str(PROFILE_MATCH_THRESHOLDS[profile]),
        }
        api = FaceauthService("api", api_env(ml.url, work / "data", api_settings), log_path=work / "api.log")
        with api, httpx.Client(timeout=60) as client:
            enrolled = 0
            for i, data in enumerate(photos.values()):
                r = client.post(
                    f"{api.url}/v1/faces/insert",
                    data={"id": f"p{i}", "tenant": "bench"},
                    files={"file": ("p.jpg", data)},
                )
                enrolled += r.status_code == 200
            analyze, search = [], []
            for data in photos.values():
                started = time.perf_counter()
                r = client.post(
                    f"{ml.url}/v1/analyze",
                    content=data,
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"},
                )
                analyze.append((time.perf_counter() - started) * 1000)
                assert r.status_code == 200, r.text
                started = time.perf_counter()
                r = client.post(f"{api.url}/v1/faces/search", data={"tenant": "bench"}, files={"file": ("q.jpg", data)})
                search.append((time.perf_counter() - started) * 1000)

    def summary(ms: list[float]) -> dict[str, float]:
        return {"p50": round(statistics.median(ms), 1), "p95": round(float(np.percentile(ms, 95)), 1)}

    return {"enrolled": enrolled, "of": len(photos), "analyze_ms": summary(analyze), "search_ms": summary(search)}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    rows = []

    def row(label: str, fn) -> None:
        rows.append(f"| {label} | " + " | ".join(str(fn(results[p])) for p in PROFILES) + " |")

    rows.append("| | " + " | ".join(PROFILES) + " |")
    rows.append("|---|" + "---|" * len(PROFILES))
    for set_name in ("photos", "frame_filling", "small_faces"):
        row(
            f"{set_name}: face detected / usable face embedded",
            lambda r, s=set_name: (
                f"{r['detection'][s]['detected']}/{r['detection'][s]['of']} / "
                f"{r['detection'][s]['found']}/{r['detection'][s]['of']}"
            ),
        )
    row("pairs scored", lambda r: r["pairs"]["scored"])
    row("lowest same-person cosine", lambda r: r["pairs"]["same_min"])
    row("highest different-person cosine", lambda r: r["pairs"]["different_max"])
    row("margin", lambda r: r["pairs"]["margin"])
    row("EER (threshold)", lambda r: f"{100 * r['pairs']['eer']['eer']:.2f} % ({r['pairs']['eer']['threshold']:.4f})")
    row(
        "profile threshold: FMR / FNMR",
        lambda r: (
            f"{r['pairs']['at_profile_threshold']['threshold']}: {r['pairs']['at_profile_threshold']['false_matches']}"
            f" / {r['pairs']['at_profile_threshold']['false_non_matches']}"
        ),
    )
    row(
        "genuine photos refused as spoofs", lambda r: f"{len(r['spoof']['genuine_refused'])}/{r['spoof']['genuine_of']}"
    )
    row(
        "live_1 refused / spoof_print_1 refused",
        lambda r: f"{r['spoof']['live_1.jpg']['refused']} / {r['spoof']['spoof_print_1.jpg']['refused']}",
    )
    row("in-process embed+spoof+blur, median ms", lambda r: r["in_process_ms_median"])
    if all("http" in r for r in results.values()):
        row(
            "POST /v1/analyze p50 / p95 ms",
            lambda r: f"{r['http']['analyze_ms']['p50']} / {r['http']['analyze_ms']['p95']}",
        )
        row(
            "POST /v1/faces/search p50 / p95 ms",
            lambda r: f"{r['http']['search_ms']['p50']} / {r['http']['search_ms']['p95']}",
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", action="store_true", help="also time both services over HTTP")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    shared = shared_dir()
    folder = shared / "faces" / "deepface"
    photos = {p.name: p.read_bytes() for p in sorted(folder.glob("*.jpg"))}
    sets = derived_sets(photos)
    results = {}
    for profile in PROFILES:
        print(f"measuring {profile} ...", file=sys.stderr, flush=True)
        results[profile] = measure_quality(profile, sets, shared)
        if args.http:
            results[profile]["http"] = measure_http(profile, photos, shared)
    print(format_table(results))
    for profile in PROFILES:
        print(f"{profile}: missed {json.dumps({k: v['missed'] for k, v in results[profile]['detection'].items()})}")
        print(f"{profile}: genuine refused as spoofs {results[profile]['spoof']['genuine_refused']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
