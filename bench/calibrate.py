"""Measure false match / false non-match rates of the face embedder on labelled photo pairs; pick thresholds.

Input is a CSV of labelled pairs in the layout of ``$FACEAUTH_SHARED_DIR/faces/deepface/master.csv``: columns
``file_x,file_y,Decision`` (header names are matched case-insensitively), Decision ``Yes`` for the same person
and ``No`` for different people. Image paths are relative to the CSV's folder unless absolute (``--images DIR``
reads them from DIR instead); a relative path that is not found there is also tried by its file name alone.

Every distinct photo is embedded once, exactly as the ML service's ``/v1/embed`` does it: in-process with the
service's own pipeline (same settings from ``ML_SERVICE_*``, same detector, alignment and embedder, largest
usable face), or with ``--ml-url`` by calling a running ML service. Photos without a usable face are listed and
their pairs left out (and counted). Each pair's score is the cosine similarity of the two embeddings, and a
search accepts a pair when ``score >= threshold``. So, for a threshold t:

* FMR(t)  (false match rate)     = share of different-person pairs with score >= t
* FNMR(t) (false non-match rate) = share of same-person pairs with score < t

Reported: a table of thresholds against FMR/FNMR, the equal error rate, for each ``--target-fmr`` the lowest
threshold whose FMR is at most the target (and the FNMR there), and both rates at ``--threshold`` (default:
the Face API's default search threshold). With N different-person pairs the smallest non-zero FMR that can be
observed is 1/N: a smaller target is reported as not resolvable (with the threshold at which FMR reaches 0).

Run::

    export FACEAUTH_SHARED_DIR=/path/to/shared     # the folder that holds faces/deepface
    uv run python -m bench.calibrate \\
        "$FACEAUTH_SHARED_DIR/faces/deepface/master.csv" --json calibrate.json \\
        --plot docs/img/roc_buffalo_s.png
    ... --all-pairs                         # also every cross pair between unrelated identity groups
    ... --ml-url http://127.0.0.1:8001 --token "$TOKEN"    # embed with a running ML service instead
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.photos import Pair, identity_groups, read_pairs
from faceauth.config import APISettings

DEFAULT_TARGETS = (1e-2, 1e-3)
# The thresholds the printed table always shows (besides the default and the chosen ones).
TABLE_THRESHOLDS = tuple(round(0.10 + 0.05 * i, 2) for i in range(11))  # 0.10 .. 0.60
GRID_STEP = 0.001


def default_search_threshold() -> float:
    """The Face API's default search threshold (the declared default, not whatever the environment says)."""
    return float(APISettings.model_fields["milvus_search_threshold"].default)


# ------------------------------------------------------------------------------------------------- pairs


def resolve_photo(name: str, base: Path) -> Path | None:
    """The file of a photo named in the CSV: absolute as is, else under ``base``, else its bare name in ``base``."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    for candidate in (base / path, base / path.name):
        if candidate.is_file():
            return candidate
    return None


def label_conflicts(pairs: Iterable[Pair], groups: dict[str, str]) -> list[Pair]:
    """Different-person pairs whose photos the same-person pairs connect (the CSV contradicts itself)."""
    return [p for p in pairs if not p.same and groups[p.left] == groups[p.right]]


def cross_group_pairs(pairs: Sequence[Pair], photos: Iterable[str]) -> list[Pair]:
    """Unlisted pairs of ``photos`` in different identity groups, taken as different people (see --all-pairs).

    Two photos are in one group when a chain of same-person pairs joins them; photos in different groups have
    no same-person evidence between them. Unlisted pairs inside one group are not added.
    """
    groups = identity_groups(pairs)
    listed = {p.key for p in pairs}
    names = sorted(set(photos))
    extra = []
    for i, left in enumerate(names):
        for right in names[i + 1 :]:
            if (left, right) not in listed and groups.get(left, left) != groups.get(right, right):
                extra.append(Pair(left, right, False, listed=False))
    return extra


# ------------------------------------------------------------------------------------------------- embedding


@dataclass
class Embedded:
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # photo -> unit vector
    failures: dict[str, str] = field(default_factory=dict)  # photo -> why it has no embedding
    model_id: str | None = None
    seconds: float = 0.0


# (photo bytes, file name) -> (unit embedding or None, why there is none)
EmbedOne = Callable[[bytes, str], tuple[np.ndarray | None, str | None]]


def in_process_embedder(**overrides: object) -> tuple[EmbedOne, str]:
    """The ML service's own detection + alignment + embedding, loaded here (settings from ``ML_SERVICE_*``)."""
    from faceauth.config import load_ml_settings
    from faceauth.inference import modelset
    from faceauth.inference.modelset import ModelSet
    from faceauth.inference.pipeline import Pipeline
    from faceauth.kit.errors import AppError

    settings = load_ml_settings(**overrides)
    # ModelSet loads every slot; only the detector and the embedder matter here, so the others' complaints
    # (a missing anti-spoof model, say) are not shown.
    loader_log = logging.getLogger(modelset.__name__)
    previous = loader_log.level
    loader_log.setLevel(logging.CRITICAL)
    try:
        models = ModelSet.load(settings)
    finally:
        loader_log.setLevel(previous)
    for name in ("detector", "embedder"):
        slot = models.slots[name]
        if slot.state != "ready":
            raise SystemExit(f"the {name} model is not loaded: {slot.error or slot.state}")
    pipeline = Pipeline(models, settings)
    checks = frozenset({"embed"})

    def embed(data: bytes, name: str = "") -> tuple[np.ndarray | None, str | None]:
        try:
            analysis = pipeline.analyze(data, checks)  # what InferenceService.embed runs
        except AppError as exc:
            return None, f"{exc.code}: {exc.message}"
        if analysis.embedding is None:
            return None, analysis.face_issue or "no_face"
        return analysis.embedding, None

    return embed, models.slots["embedder"].model_id or "embedder"


def http_embedder(url: str, token: str | None, timeout_s: float = 60.0) -> tuple[EmbedOne, Callable[[], str]]:
    """A running ML service's ``POST /v1/embed`` (multipart ``file``)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
    seen: set[str] = set()

    def embed(data: bytes, name: str = "photo.jpg") -> tuple[np.ndarray | None, str | None]:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            response = client.post("/v1/embed", files={"file": (name, data, mime)})
        except httpx.HTTPError as exc:
            raise SystemExit(f"{url}/v1/embed: {type(exc).__name__}: {exc}") from None
        if not response.is_success:
            try:
                error = response.json().get("error") or {}
                why = f"HTTP {response.status_code} {error.get('code', '')}: {error.get('message', '')}"
            except (ValueError, AttributeError):
                why = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code in (401, 403):
                raise SystemExit(f"{url}/v1/embed: {why} (pass the service's token with --token)")
            if response.status_code >= 500:  # the service, not the photo: no measurement without it
                raise SystemExit(f"{url}/v1/embed: {why}")
            return None, why  # the photo itself (not an image, too large, ...): reported and left out
        answer = response.json()
        if answer.get("model_id"):
            seen.add(str(answer["model_id"]))
        if not answer.get("embedding"):
            return None, answer.get("face_issue") or "no_face"
        return np.asarray(answer["embedding"], dtype=np.float64), None

    def model_id() -> str:
        if len(seen) > 1:
            raise SystemExit(f"the service answered with several model ids: {sorted(seen)}")
        return next(iter(seen), "unknown")

    return embed, model_id


def embed_photos(paths: dict[str, Path], embed: EmbedOne) -> Embedded:
    """Each photo once. Vectors are normalised to unit length (the service's already are)."""
    out = Embedded()
    started = time.perf_counter()
    for name, path in sorted(paths.items()):
        vector, issue = embed(path.read_bytes(), path.name)
        if vector is None:
            out.failures[name] = issue or "no_face"
            continue
        vector = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(vector))
        if not math.isfinite(norm) or norm == 0.0:
            out.failures[name] = "zero or non-finite embedding"
            continue
        out.vectors[name] = vector / norm
    out.seconds = time.perf_counter() - started
    return out


# ------------------------------------------------------------------------------------------------- rates


def error_rates(
    same: Sequence[float] | np.ndarray,
    different: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """FMR and FNMR at each threshold: share of different-person scores >= t, share of same-person scores < t."""
    same_sorted = np.sort(np.asarray(same, dtype=np.float64))
    diff_sorted = np.sort(np.asarray(different, dtype=np.float64))
    t = np.asarray(thresholds, dtype=np.float64)
    if len(same_sorted) == 0 or len(diff_sorted) == 0:
        raise ValueError("need at least one same-person and one different-person score")
    false_matches = len(diff_sorted) - np.searchsorted(diff_sorted, t, side="left")
    false_non_matches = np.searchsorted(same_sorted, t, side="left")
    return false_matches / len(diff_sorted), false_non_matches / len(same_sorted)


def rates_at(same: np.ndarray, different: np.ndarray, threshold: float) -> dict[str, Any]:
    false_matches = int(np.count_nonzero(np.asarray(different) >= threshold))
    false_non_matches = int(np.count_nonzero(np.asarray(same) < threshold))
    return {
        "threshold": float(threshold),
        "fmr": false_matches / len(different),
        "fnmr": false_non_matches / len(same),
        "false_matches": false_matches,
        "false_non_matches": false_non_matches,
        "fmr_upper95": binomial_upper_bound(false_matches, len(different)),
    }


def binomial_upper_bound(errors: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen as ``errors`` out of ``trials``.

    With no errors in N trials this is 1 - 0.05**(1/N), about 3/N (the "rule of three").
    """
    if errors >= trials:
        return 1.0
    alpha = 1.0 - confidence

    def cdf(p: float) -> float:  # P(X <= errors) for X ~ Binomial(trials, p)
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 0.0
        log_p, log_q = math.log(p), math.log1p(-p)
        log_n = math.lgamma(trials + 1)
        total = 0.0
        for k in range(errors + 1):
            log_choose = log_n - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
            total += math.exp(log_choose + k * log_p + (trials - k) * log_q)
        return total

    lo, hi = errors / trials, 1.0
    for _ in range(100):  # cdf falls as p rises: bisect for cdf(p) = alpha
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def curve_thresholds(same: np.ndarray, different: np.ndarray, step: float = GRID_STEP) -> np.ndarray:
    """A fine grid over [-1, 1] plus every observed score (where the rates actually change)."""
    grid = np.round(np.arange(-1.0, 1.0 + step / 2, step), 6)
    return np.unique(np.concatenate([grid, np.asarray(same, float), np.asarray(different, float)]))


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> dict[str, float]:
    """The EER: (FMR + FNMR) / 2 where |FMR - FNMR| is smallest.

    Both rates only change just above an observed score, so every threshold interval between neighbouring
    scores is tried once. |FMR - FNMR| is smallest on one run of neighbouring intervals; the reported
    threshold is the middle of that run (for perfectly separated scores: the middle of the gap between the
    highest different-person and the lowest same-person score).
    """
    scores = np.unique(np.concatenate([same, different]))
    # One threshold per interval: each score t stands for (previous score, t]; the last stands for (max, inf).
    candidates = np.append(scores, np.nextafter(scores[-1], np.inf))
    fmr, fnmr = error_rates(same, different, candidates)
    gap = np.abs(fmr - fnmr)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    first, last = int(best[0]), int(best[-1])
    lower = float(scores[first - 1]) if first > 0 else float(candidates[first]) - GRID_STEP
    upper = float(scores[last]) if last < len(scores) else float(scores[-1]) + GRID_STEP
    threshold = (lower + upper) / 2
    fmr_t, fnmr_t = error_rates(same, different, [threshold])
    return {
        "eer": float(fmr_t[0] + fnmr_t[0]) / 2,
        "threshold": threshold,
        "fmr": float(fmr_t[0]),
        "fnmr": float(fnmr_t[0]),
        "interval": [lower, upper],
    }


def threshold_for_fmr(same: np.ndarray, different: np.ndarray, target: float) -> dict[str, Any]:
    """The lowest threshold with FMR <= target, and the FNMR there.

    FMR(t) <= target allows k = floor(target * N) different-person pairs at or above t, so t must lie just
    above the (k+1)-th highest different-person score s. The threshold reported is the next float above s
    (any value in (s, next higher score] gives the same rates).
    """
    n = len(different)
    allowed = math.floor(target * n + 1e-9)
    descending = np.sort(np.asarray(different, dtype=np.float64))[::-1]
    if allowed >= n:
        bound = float(descending[-1]) - GRID_STEP  # every pair may be a false match: any low threshold does
        threshold = bound
    else:
        bound = float(descending[allowed])
        threshold = float(np.nextafter(bound, np.inf))
    resolvable = target >= 1.0 / n
    result = {
        "target_fmr": target,
        "resolvable": resolvable,
        "above_score": bound,
        **rates_at(np.asarray(same), np.asarray(different), threshold),
    }
    if not resolvable:
        result["note"] = (
            f"not resolvable with this many pairs: {n} different-person pairs measure FMR in steps of "
            f"1/{n} = {1 / n:.2e}; the threshold is where the observed FMR reaches 0"
        )
    return result


def describe(scores: np.ndarray) -> dict[str, float]:
    q = np.percentile(scores, [0, 1, 5, 50, 95, 99, 100])
    keys = ("min", "p1", "p5", "median", "p95", "p99", "max")
    return {"count": len(scores), "mean": float(np.mean(scores)), **{k: float(v) for k, v in zip(keys, q, strict=True)}}


# ------------------------------------------------------------------------------------------------- report


@dataclass
class ScoredPair:
    pair: Pair
    score: float


def score_pairs(pairs: Sequence[Pair], vectors: dict[str, np.ndarray]) -> tuple[list[ScoredPair], list[Pair]]:
    """Cosine score of every pair whose photos both have an embedding; the others are returned as excluded."""
    scored, excluded = [], []
    for pair in pairs:
        if pair.left in vectors and pair.right in vectors:
            scored.append(ScoredPair(pair, float(vectors[pair.left] @ vectors[pair.right])))
        else:
            excluded.append(pair)
    return scored, excluded


def build_summary(
    *,
    listed: Sequence[Pair],
    scored: Sequence[ScoredPair],
    excluded: Sequence[Pair],
    embedded: Embedded,
    conflicts: Sequence[Pair],
    targets: Sequence[float],
    threshold: float,
    threshold_source: str,
    all_pairs: bool,
    source: dict[str, Any],
) -> dict[str, Any]:
    same = np.array([s.score for s in scored if s.pair.same], dtype=np.float64)
    diff = np.array([s.score for s in scored if not s.pair.same], dtype=np.float64)
    if len(same) == 0 or len(diff) == 0:
        raise SystemExit(f"need same-person and different-person pairs with faces: have {len(same)} and {len(diff)}")
    grid = curve_thresholds(same, diff)
    fmr, fnmr = error_rates(same, diff, grid)
    return {
        "model_id": embedded.model_id,
        "source": {**source, "all_pairs": all_pairs},
        "photos": {
            "total": len(embedded.vectors) + len(embedded.failures),
            "embedded": len(embedded.vectors),
            "without_embedding": dict(sorted(embedded.failures.items())),
            "embed_seconds": round(embedded.seconds, 3),
        },
        "pairs": {
            "listed": len(listed),
            "listed_same": sum(p.same for p in listed),
            "listed_different": sum(not p.same for p in listed),
            "excluded": len(excluded),
            "excluded_same": sum(p.same for p in excluded),
            "excluded_different": sum(not p.same for p in excluded),
            "added_different": sum(not s.pair.listed for s in scored),
            "scored": len(scored),
            "same": len(same),
            "different": len(diff),
            "label_conflicts": [[p.left, p.right] for p in conflicts],
        },
        "scores": {"same": describe(same), "different": describe(diff)},
        "resolution": {"smallest_nonzero_fmr": 1 / len(diff), "smallest_nonzero_fnmr": 1 / len(same)},
        "eer": equal_error_rate(same, diff),
        "targets": [threshold_for_fmr(same, diff, t) for t in targets],
        "at_threshold": {**rates_at(same, diff, threshold), "source": threshold_source},
        "curve": {"threshold": grid.tolist(), "fmr": fmr.tolist(), "fnmr": fnmr.tolist()},
        "pair_scores": [
            {"left": s.pair.left, "right": s.pair.right, "same": s.pair.same, "listed": s.pair.listed, "score": s.score}
            for s in scored
        ],
    }


def _pct(rate: float) -> str:
    return f"{100 * rate:7.3f}%"


def format_report(summary: dict[str, Any]) -> str:
    pairs, scores = summary["pairs"], summary["scores"]
    same = np.array([p["score"] for p in summary["pair_scores"] if p["same"]])
    diff = np.array([p["score"] for p in summary["pair_scores"] if not p["same"]])
    n_same, n_diff = len(same), len(diff)
    photos = summary["photos"]
    lines = [
        f"model {summary['model_id']}",
        f"photos: {photos['embedded']} embedded, {len(photos['without_embedding'])} without a usable face",
    ]
    for name, why in photos["without_embedding"].items():
        lines.append(f"  no embedding: {name} ({why})")
    lines.append(
        f"pairs: {pairs['listed']} listed ({pairs['listed_same']} same, {pairs['listed_different']} different), "
        f"{pairs['excluded']} excluded (a photo without embedding), {pairs['added_different']} added by --all-pairs -> "
        f"{n_same} same-person and {n_diff} different-person pairs scored"
    )
    for left, right in pairs["label_conflicts"]:
        lines.append(f"  label conflict: {left} / {right} is 'No' but same-person pairs connect them")
    for label in ("same", "different"):
        s = scores[label]
        lines.append(
            f"{label:9s} cosine: min {s['min']:.3f}  p5 {s['p5']:.3f}  median {s['median']:.3f}  "
            f"p95 {s['p95']:.3f}  max {s['max']:.3f}"
        )
    lines.append(
        f"resolution: the smallest non-zero FMR measurable is 1/{n_diff} = {1 / n_diff:.2e}, "
        f"the smallest non-zero FNMR 1/{n_same} = {1 / n_same:.2e}"
    )
    lines.append("")

    at = summary["at_threshold"]
    eer = summary["eer"]
    # threshold -> (how it is shown, note). A target's threshold is just above a score: shown as "> score".
    rows: dict[float, tuple[str, str]] = {t: (f"{t:.4f}", "") for t in TABLE_THRESHOLDS}
    rows[at["threshold"]] = (f"{at['threshold']:.4f}", "configured" if at["source"] == "--threshold" else "default")
    rows[eer["threshold"]] = (f"{eer['threshold']:.4f}", "EER")
    for target in summary["targets"]:
        note = f"lowest for FMR <= {target['target_fmr']:g}" + ("" if target["resolvable"] else " (not resolvable)")
        rows[target["threshold"]] = (f"> {target['above_score']:.4f}", note)
    lines.append(f"{'threshold':>10} {'FMR':>8} {'false m.':>10} {'FNMR':>8} {'false n-m.':>10}  note")
    for t in sorted(rows):
        shown, note = rows[t]
        r = rates_at(same, diff, t)
        lines.append(
            f"{shown:>10} {_pct(r['fmr'])} {r['false_matches']:>5d}/{n_diff:<4d} {_pct(r['fnmr'])} "
            f"{r['false_non_matches']:>5d}/{n_same:<4d}  {note}".rstrip()
        )
    lines.append("")
    lines.append(
        f"EER {100 * eer['eer']:.3f}% at threshold {eer['threshold']:.4f} "
        f"(|FMR-FNMR| smallest for thresholds in ({eer['interval'][0]:.4f}, {eer['interval'][1]:.4f}])"
    )
    for target in summary["targets"]:
        text = (
            f"FMR <= {target['target_fmr']:g}: lowest threshold just above {target['above_score']:.6f} "
            f"-> FMR {100 * target['fmr']:.3f}% ({target['false_matches']}/{n_diff}, 95% upper bound "
            f"{100 * target['fmr_upper95']:.2f}%), FNMR {100 * target['fnmr']:.3f}%"
        )
        lines.append(text)
        if not target["resolvable"]:
            lines.append(f"  {target['note']}")
    lines.append(
        f"at threshold {at['threshold']:g} ({at['source']}): FMR {100 * at['fmr']:.3f}% "
        f"({at['false_matches']}/{n_diff}, 95% upper bound {100 * at['fmr_upper95']:.2f}%), "
        f"FNMR {100 * at['fnmr']:.3f}% ({at['false_non_matches']}/{n_same})"
    )
    return "\n".join(lines)


def write_plot(summary: dict[str, Any], out: Path) -> None:
    """Three panels: FNMR against FMR (log x), both rates against the threshold, the two score histograms.

    A rate of 0 cannot be drawn on a log axis: it is drawn at half the resolution, 1/(2N), and said so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    same = np.array([p["score"] for p in summary["pair_scores"] if p["same"]])
    diff = np.array([p["score"] for p in summary["pair_scores"] if not p["same"]])
    fmr_floor, fnmr_floor = 0.5 / len(diff), 0.5 / len(same)
    curve = summary["curve"]
    thresholds = np.array(curve["threshold"])
    fmr, fnmr = np.array(curve["fmr"]), np.array(curve["fnmr"])
    at, eer, targets = summary["at_threshold"], summary["eer"], summary["targets"]
    lowest_x = min([fmr_floor, *(t["target_fmr"] for t in targets)]) / 2

    fig, (det, rates, hist) = plt.subplots(1, 3, figsize=(16, 4.8))
    det.step(np.maximum(fmr, fmr_floor), fnmr, where="post", color="tab:blue", label="FNMR vs FMR")
    det.axvline(1 / len(diff), color="grey", linestyle=":", linewidth=1, label=f"resolution 1/{len(diff)}")
    for i, target in enumerate(targets):
        det.axvline(
            target["target_fmr"],
            color="tab:orange",
            linestyle="--",
            linewidth=0.8,
            label="target FMR" if i == 0 else None,
        )
    det.plot([max(at["fmr"], fmr_floor)], [at["fnmr"]], "o", color="tab:red", label=f"threshold {at['threshold']:g}")
    det.plot([max(eer["fmr"], fmr_floor)], [eer["fnmr"]], "s", color="tab:green", label=f"EER {100 * eer['eer']:.2f}%")
    det.set_xscale("log")
    det.set_xlim(lowest_x, 1.0)
    det.set_ylim(-0.02, 1.02)
    det.set_xlabel("FMR (FMR = 0 drawn at 1/(2N))")
    det.set_ylabel("FNMR")
    det.set_title("Error trade-off")
    det.grid(True, which="both", alpha=0.3)
    det.legend(loc="upper right", fontsize=8)

    shown = (thresholds >= min(same.min(), diff.min()) - 0.05) & (thresholds <= max(same.max(), diff.max()) + 0.05)
    rates.step(thresholds[shown], np.maximum(fmr[shown], fmr_floor), where="post", color="tab:orange", label="FMR")
    rates.step(thresholds[shown], np.maximum(fnmr[shown], fnmr_floor), where="post", color="tab:blue", label="FNMR")
    rates.axhline(fmr_floor, color="tab:orange", linestyle=":", linewidth=0.8, label="FMR = 0")
    rates.axhline(fnmr_floor, color="tab:blue", linestyle=":", linewidth=0.8, label="FNMR = 0")
    rates.axvline(at["threshold"], color="tab:red", linewidth=1.5, label=f"threshold {at['threshold']:g}")
    rates.set_yscale("log")
    rates.set_xlabel("threshold (cosine similarity)")
    rates.set_ylabel("rate (0 drawn at 1/(2N))")
    rates.set_title("FMR and FNMR by threshold")
    rates.grid(True, which="both", alpha=0.3)
    rates.legend(loc="lower left", fontsize=8)

    bins = np.linspace(min(same.min(), diff.min()) - 0.02, max(same.max(), diff.max()) + 0.02, 50)
    hist.hist(diff, bins=bins, alpha=0.6, color="tab:orange", label=f"different person ({len(diff)})", density=True)
    hist.hist(same, bins=bins, alpha=0.6, color="tab:blue", label=f"same person ({len(same)})", density=True)
    hist.axvline(at["threshold"], color="tab:red", linewidth=1.5, label=f"threshold {at['threshold']:g}")
    hist.axvline(eer["threshold"], color="tab:green", linestyle="--", linewidth=1, label="EER threshold")
    hist.set_xlabel("cosine similarity")
    hist.set_ylabel("density")
    hist.set_title("Score distributions")
    hist.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{summary['model_id']}: {len(same)} same-person, {len(diff)} different-person pairs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_threshold = default_search_threshold()
    parser = argparse.ArgumentParser(
        prog="python -m bench.calibrate",
        description="FMR / FNMR of the face embedder on labelled pairs, the EER and thresholds for target FMRs.",
        epilog=(
            "--all-pairs assumption: identity groups are built from the same-person (Yes) pairs (photos joined by "
            "a chain of Yes pairs are one person). Every unlisted pair of photos in two different groups is then "
            "counted as a different-person pair, because the CSV gives no evidence that they are the same "
            "person. That is wrong if one person appears in two groups that no Yes pair connects: such pairs "
            "would count as false matches, and the FMR would come out too high (the threshold too strict)."
        ),
    )
    parser.add_argument("pairs", type=Path, help="CSV with file_x,file_y,Decision (Yes = same person, No = not)")
    parser.add_argument("--images", type=Path, help="folder of the photos (default: the CSV's folder)")
    parser.add_argument("--ml-url", help="embed with a running ML service's /v1/embed instead of in-process")
    parser.add_argument(
        "--token",
        default=os.environ.get("FACEAUTH_ML_INFERENCE_AUTH_TOKEN"),
        help="the ML service's internal token (default: env FACEAUTH_ML_INFERENCE_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--target-fmr",
        type=float,
        action="append",
        help="a false match rate to find the threshold for (repeatable; default 1e-2 and 1e-3)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help=f"report FMR/FNMR at this threshold (default: the search default, {default_threshold})",
    )
    parser.add_argument(
        "--all-pairs",
        action="store_true",
        help="also score every unlisted pair between different identity groups as different people (see below)",
    )
    parser.add_argument("--json", type=Path, help="write the summary (with every pair's score) here")
    parser.add_argument("--plot", type=Path, help="write the error trade-off and score histograms here (PNG)")
    args = parser.parse_args(argv)
    args.target_fmr = args.target_fmr or list(DEFAULT_TARGETS)
    if any(not 0.0 < t < 1.0 for t in args.target_fmr):
        parser.error("--target-fmr must be between 0 and 1")
    if args.threshold is None:
        args.threshold_source = "APISettings.milvus_search_threshold default"
        args.threshold = default_threshold
    else:
        args.threshold_source = "--threshold"
    if not -1.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between -1 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    csv_path = args.pairs.resolve()
    images = (args.images or csv_path.parent).resolve()
    listed = read_pairs(csv_path)
    if not listed:
        raise SystemExit(f"{csv_path} lists no pairs")
    names = sorted({p.left for p in listed} | {p.right for p in listed})
    paths = {name: resolve_photo(name, images) for name in names}
    missing = sorted(name for name, path in paths.items() if path is None)
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise SystemExit(f"{len(missing)} photo(s) not found under {images}: {shown}")

    if args.ml_url:
        embed, model_id = http_embedder(args.ml_url, args.token)
        embedded = embed_photos(paths, embed)
        embedded.model_id = model_id()
    else:
        embed, loaded_id = in_process_embedder()
        embedded = embed_photos(paths, embed)
        embedded.model_id = loaded_id

    groups = identity_groups(listed)
    conflicts = label_conflicts(listed, groups)
    pairs = list(listed)
    if args.all_pairs:
        pairs += cross_group_pairs(listed, embedded.vectors)
    scored, excluded = score_pairs(pairs, embedded.vectors)
    summary = build_summary(
        listed=listed,
        scored=scored,
        excluded=excluded,
        embedded=embedded,
        conflicts=conflicts,
        targets=args.target_fmr,
        threshold=args.threshold,
        threshold_source=args.threshold_source,
        all_pairs=args.all_pairs,
        source={"pairs_csv": str(args.pairs), "images": args.images and str(args.images), "ml_url": args.ml_url},
    )
    print(format_report(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        write_plot(summary, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
