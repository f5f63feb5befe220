"""BPCER and APCER of the passive anti-spoof check: MiniFASNetV2 alone against V2 + V1SE fused.

Every photo runs through the ML service's own pipeline in-process (same decode, detector, crops and models as
`/v1/analyze`), once with V2 alone and once fused. Genuine (bona fide) photos: every photo of
`faces/deepface` and `faces/antispoof/live_*`. Attacks: `faces/antispoof/spoof_*` (a printed photo) and screen
replays made here from each genuine photo (`screen_replay`: the photo shown on an LCD, re-photographed at an angle:
subpixel grid and moiré, backlight glow, a perspective tilt, a dark bezel, a reflection, camera blur, noise and
JPEG). A made-up replay is an honest stand-in, not a real attack capture: say so wherever the figures go.

    BPCER = genuine photos flagged as spoof / genuine photos with a face
    APCER = attack images not flagged / attack images with a face

Run::

    export FACEAUTH_SHARED_DIR=/path/to/shared
    uv run python -m bench.antispoof --v2 $FACEAUTH_SHARED_DIR/models/minifasnet_v2_80x80.onnx \\
        --v1se $FACEAUTH_SHARED_DIR/models/minifasnet_v1se_80x80.onnx
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceauth.config import MLSettings
from faceauth.inference.modelset import ModelSet
from faceauth.inference.pipeline import Pipeline

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def screen_replay(image: bytes, seed: int) -> bytes:
    """`image` as if shown on a screen and photographed with a phone at an angle."""
    rng = np.random.default_rng(seed)
    rgb = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    # The screen's pixels: the photo at the panel's resolution, each pixel drawn as R, G, B stripes.
    panel_w = int(rng.integers(240, 360))
    panel_h = max(1, round(h * panel_w / w))
    panel = cv2.resize(rgb, (panel_w, panel_h), interpolation=cv2.INTER_AREA)
    sub = 3
    big = np.repeat(np.repeat(panel, sub, axis=0), sub, axis=1)
    mask = np.zeros((sub, sub, 3), np.float32)
    for c in range(3):
        mask[: sub - 1, c, c] = 1.0  # one stripe per colour, a dark line between rows
    big *= np.tile(mask, (panel_h, panel_w, 1)) * 2.6
    # Backlight: brighter, bluish, lower contrast, a glow from the centre.
    big = big * rng.uniform(0.8, 1.0) + rng.uniform(20, 45)
    big[..., 2] *= rng.uniform(1.03, 1.12)
    yy, xx = np.mgrid[0 : big.shape[0], 0 : big.shape[1]].astype(np.float32)
    glow = 1 - 0.25 * (((xx / big.shape[1] - 0.5) ** 2 + (yy / big.shape[0] - 0.5) ** 2) * 2)
    big *= glow[..., None]
    # The phone in the scene: a bezel around the screen on a dim background, tilted in perspective.
    bezel = int(0.06 * big.shape[1])
    scene_h, scene_w = big.shape[0] + 4 * bezel, big.shape[1] + 4 * bezel
    scene = np.full((scene_h, scene_w, 3), rng.uniform(60, 120), np.float32)
    scene[bezel : scene_h - bezel, bezel : scene_w - bezel] = 15
    scene[2 * bezel : 2 * bezel + big.shape[0], 2 * bezel : 2 * bezel + big.shape[1]] = big
    tilt = rng.uniform(0.06, 0.16)
    src = np.float32([[0, 0], [scene_w, 0], [scene_w, scene_h], [0, scene_h]])
    dx, dy = tilt * scene_w, rng.uniform(0.0, 0.08) * scene_h
    dst = np.float32([[dx, dy], [scene_w - dx * 0.3, 0], [scene_w, scene_h], [dx * 0.6, scene_h - dy]])
    # Re-photographed at a resolution that does not match the subpixel grid: this resampling makes the moiré.
    out_w = int(scene_w * rng.uniform(0.55, 0.8))
    out_h = int(scene_h * out_w / scene_w)
    matrix = cv2.getPerspectiveTransform(src, dst * np.float32([out_w / scene_w, out_h / scene_h]))
    shot = cv2.warpPerspective(scene, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=(70, 70, 70))
    # A reflection across the glass, camera blur and sensor noise.
    band = np.clip(1 - np.abs((np.arange(out_w)[None, :] - rng.uniform(0.2, 0.8) * out_w) / (0.15 * out_w)), 0, 1)
    shot += 40 * band[..., None] * rng.uniform(0.3, 1.0)
    shot = cv2.GaussianBlur(shot, (0, 0), rng.uniform(0.4, 0.9))
    shot += rng.normal(0, 3.0, shot.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(shot, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=int(rng.integers(80, 93)))
    return out.getvalue()


def spoof_probabilities(pipeline: Pipeline, images: dict[str, bytes]) -> dict[str, float | None]:
    """P(spoof) of each image's subject face (None: no usable face)."""
    out: dict[str, float | None] = {}
    for name, data in images.items():
        findings = pipeline.analyze(data, frozenset({"spoof"}))
        out[name] = findings.probabilities.get("spoof")
    return out


def rates(genuine: dict[str, float | None], attacks: dict[str, float | None], threshold: float) -> dict:
    g = [p for p in genuine.values() if p is not None]
    a = [p for p in attacks.values() if p is not None]
    refused = sum(p >= threshold for p in g)
    accepted = sum(p < threshold for p in a)
    return {
        "threshold": threshold,
        "bpcer": refused / len(g),
        "bpcer_count": f"{refused}/{len(g)}",
        "apcer": accepted / len(a),
        "apcer_count": f"{accepted}/{len(a)}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("FACEAUTH_SHARED_DIR", "../shared"))
    parser.add_argument("--v2", type=Path, default=shared / "models" / "minifasnet_v2_80x80.onnx")
    parser.add_argument("--v1se", type=Path, default=shared / "models" / "minifasnet_v1se_80x80.onnx")
    parser.add_argument("--faces", type=Path, default=shared / "faces")
    parser.add_argument("--threshold", type=float, default=0.5, help="the threshold reported for both")
    parser.add_argument("--json", type=Path, help="write every probability here")
    args = parser.parse_args(argv)

    genuine = {p.name: p.read_bytes() for p in sorted((args.faces / "deepface").glob("*.jpg"))}
    genuine |= {p.name: p.read_bytes() for p in sorted((args.faces / "antispoof").glob("live_*"))}
    attacks = {p.name: p.read_bytes() for p in sorted((args.faces / "antispoof").glob("spoof_*"))}
    attacks |= {f"screen:{name}": screen_replay(data, i) for i, (name, data) in enumerate(sorted(genuine.items()))}

    base = MLSettings(spoof_local_model_path=args.v2, spoof_v1se_local_model_path=args.v1se, auto_fetch=False)
    results = {}
    for label, fusion in (("V2 alone", False), ("V2 + V1SE fused", True)):
        settings = base.model_copy(update={"spoof_fusion": fusion})
        models = ModelSet.load(settings)
        pipeline = Pipeline(models, settings)
        results[label] = {
            "genuine": spoof_probabilities(pipeline, genuine),
            "attacks": spoof_probabilities(pipeline, attacks),
        }
        print(f"{label}: spoof model {models.slots['spoof'].model_id}")

    print(
        f"\ngenuine photos: {len(genuine)}; attack images: {len(attacks)} "
        f"({len(attacks) - len(genuine)} print, {len(genuine)} made screen replays)\n"
    )
    print(f"{'threshold':>9}  " + "  ".join(f"{label:>30}" for label in results))
    for t in sorted({*THRESHOLDS, args.threshold}):
        cells = []
        for r in results.values():
            x = rates(r["genuine"], r["attacks"], t)
            cells.append(f"BPCER {x['bpcer_count']:>6} APCER {x['apcer_count']:>6}")
        print(f"{t:>9.2f}  " + "  ".join(f"{c:>30}" for c in cells))
    print(f"\nat threshold {args.threshold}:")
    for label, r in results.items():
        x = rates(r["genuine"], r["attacks"], args.threshold)
        print(f"  {label}: BPCER {x['bpcer']:.3f} ({x['bpcer_count']}), APCER {x['apcer']:.3f} ({x['apcer_count']})")
        print(
            "    print sample(s): "
            + ", ".join(f"{n}={p:.3f}" for n, p in r["attacks"].items() if not n.startswith("screen:"))
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
