"""bench.calibrate: the rate arithmetic on hand-made scores, and real runs on the labelled photo pairs."""

from __future__ import annotations

import csv
import json
import math
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from bench import calibrate
from faceauth.config import APISettings
from tests.conftest import require

# -- the arithmetic, on scores small enough to count by hand ---------------------------------------------------

SAME = [0.5, 0.6, 0.7, 0.8]
DIFF = [0.1, 0.2, 0.3, 0.6]


def test_error_rates_on_a_hand_made_score_list():
    thresholds = [0.0, 0.2, 0.3, 0.55, 0.6, 0.65, 0.9]
    fmr, fnmr = calibrate.error_rates(SAME, DIFF, thresholds)
    # FMR counts different-person scores >= t; FNMR same-person scores < t (a score equal to t is a match).
    assert fmr.tolist() == [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0]
    assert fnmr.tolist() == [0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 1.0]


def test_equal_error_rate_on_a_hand_made_score_list():
    eer = calibrate.equal_error_rate(np.array(SAME), np.array(DIFF))
    # Only for thresholds in (0.5, 0.6] are the rates equal (1 of 4 each way).
    assert eer["eer"] == pytest.approx(0.25)
    assert eer["interval"] == [0.5, 0.6]
    assert eer["threshold"] == pytest.approx(0.55)


def test_equal_error_rate_of_separated_scores_is_zero_in_the_middle_of_the_gap():
    eer = calibrate.equal_error_rate(np.array([0.6, 0.9]), np.array([0.1, 0.2]))
    assert eer["eer"] == 0.0
    assert eer["threshold"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("target", "above", "fmr", "fnmr", "resolvable"),
    [
        (0.5, 0.2, 0.5, 0.0, True),  # 2 of 4 may match: just above the 3rd highest (0.2)
        (0.25, 0.3, 0.25, 0.0, True),
        (0.1, 0.6, 0.0, 0.5, False),  # below 1/4: not measurable, FMR 0 just above the highest (0.6)
    ],
)
def test_threshold_for_a_target_fmr(target, above, fmr, fnmr, resolvable):
    result = calibrate.threshold_for_fmr(np.array(SAME), np.array(DIFF), target)
    assert result["above_score"] == above
    assert result["threshold"] == np.nextafter(above, 1.0)  # the lowest threshold that excludes that score
    assert (result["fmr"], result["fnmr"], result["resolvable"]) == (fmr, fnmr, resolvable)
    assert ("note" in result) == (not resolvable)


def test_binomial_upper_bound():
    # No errors in N trials: 1 - 0.05**(1/N) (about 3/N).
    assert calibrate.binomial_upper_bound(0, 262) == pytest.approx(1 - 0.05 ** (1 / 262), rel=1e-9)
    bound = calibrate.binomial_upper_bound(2, 262)
    cdf = sum(math.comb(262, k) * bound**k * (1 - bound) ** (262 - k) for k in range(3))
    assert cdf == pytest.approx(0.05, rel=1e-6)
    assert calibrate.binomial_upper_bound(5, 5) == 1.0


def _pair(left: str, right: str, same: bool):
    return calibrate.Pair(left, right, same)


def test_identity_groups_and_cross_pairs():
    pairs = [_pair("a", "b", True), _pair("b", "c", True), _pair("d", "e", True), _pair("a", "d", False)]
    groups = calibrate.identity_groups(pairs)
    assert groups["a"] == groups["b"] == groups["c"] != groups["d"] == groups["e"]
    extra = calibrate.cross_group_pairs(pairs, ["a", "b", "c", "d", "e", "f"])
    keys = {p.key for p in extra}
    # every a/b/c x d/e pair but the listed a-d, and f (no evidence either way) with everybody
    assert keys == {
        ("a", "e"), ("b", "d"), ("b", "e"), ("c", "d"), ("c", "e"),
        ("a", "f"), ("b", "f"), ("c", "f"), ("d", "f"), ("e", "f"),
    }  # fmt: skip
    assert ("a", "c") not in keys  # same group, unlisted: never added as different
    assert all(not p.same and not p.listed for p in extra)
    assert calibrate.label_conflicts([*pairs, _pair("c", "a", False)], calibrate.identity_groups(pairs)) == [
        _pair("c", "a", False)
    ]


def test_read_pairs_and_photo_lookup(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "y.jpg").write_bytes(b"y")
    path = tmp_path / "pairs.csv"
    path.write_text("File_X,file_y,decision\nx.jpg,sub/y.jpg,Yes\nsome/where/x.jpg,y.jpg, no \n")
    pairs = calibrate.read_pairs(path)
    assert pairs == [_pair("x.jpg", "sub/y.jpg", True), _pair("some/where/x.jpg", "y.jpg", False)]
    assert calibrate.resolve_photo("sub/y.jpg", tmp_path) == tmp_path / "sub" / "y.jpg"
    assert calibrate.resolve_photo("some/where/x.jpg", tmp_path) == tmp_path / "x.jpg"  # by its bare name
    assert calibrate.resolve_photo(str(tmp_path / "x.jpg"), Path("/nonexistent")) == tmp_path / "x.jpg"
    assert calibrate.resolve_photo("z.jpg", tmp_path) is None
    path.write_text("file_x,file_y,Decision\nx.jpg,y.jpg,Maybe\n")
    with pytest.raises(ValueError, match="Yes or No"):
        calibrate.read_pairs(path)


# -- real runs on the labelled photos --------------------------------------------------------------------------


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k.lower(): v.strip() for k, v in row.items()} for row in csv.DictReader(fh)]


def _run(*args: str | Path) -> str:
    cmd = [sys.executable, "-m", "bench.calibrate", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def master_csv(faces_dir: Path) -> Path:
    path = faces_dir / "master.csv"
    require(path.is_file(), f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def master_run(master_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("calibrate")
    stdout = _run(master_csv, "--json", out / "summary.json", "--plot", out / "roc.png", "--target-fmr", "0.01")
    return json.loads((out / "summary.json").read_text()), out / "roc.png", stdout


def test_plot_is_a_png(master_run):
    _, png, _ = master_run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 600 <= width <= 4000 and 300 <= height <= 3000
    assert 10_000 < len(data) < 2_000_000


def test_counts_match_the_csv(master_run, master_csv):
    summary, _, stdout = master_run
    rows = _csv_rows(master_csv)
    photos = {r["file_x"] for r in rows} | {r["file_y"] for r in rows}
    pairs = summary["pairs"]
    assert summary["photos"]["total"] == len(photos)
    assert summary["photos"]["embedded"] == len(photos) - len(summary["photos"]["without_embedding"])
    assert pairs["listed"] == len(rows)
    assert pairs["listed_same"] == sum(r["decision"] == "Yes" for r in rows)
    assert pairs["listed_different"] == sum(r["decision"] == "No" for r in rows)
    assert pairs["added_different"] == 0
    assert pairs["same"] == pairs["listed_same"] - pairs["excluded_same"]
    assert pairs["different"] == pairs["listed_different"] - pairs["excluded_different"]
    assert len(summary["pair_scores"]) == len(rows) - pairs["excluded"]
    # every pair left out has a photo without a face, and every pair kept has both
    missing = set(summary["photos"]["without_embedding"])
    kept = [r for r in rows if r["file_x"] not in missing and r["file_y"] not in missing]
    assert len(kept) == len(summary["pair_scores"])
    assert summary["model_id"].startswith("buffalo_s/w600k_mbf")
    assert "EER" in stdout and "lowest for FMR <= 0.01" in stdout


def test_rates_are_monotonic_in_the_threshold(master_run):
    curve = master_run[0]["curve"]
    thresholds, fmr, fnmr = (np.array(curve[k]) for k in ("threshold", "fmr", "fnmr"))
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)
    assert fmr[0] == 1.0 and fnmr[0] == 0.0 and fmr[-1] == 0.0  # from -1 (everything matches) to 1
    # the curve includes every observed score exactly
    assert {p["score"] for p in master_run[0]["pair_scores"]} <= set(thresholds.tolist())


def test_rates_at_the_default_threshold_match_the_pair_scores(master_run):
    summary = master_run[0]
    at = summary["at_threshold"]
    assert at["threshold"] == APISettings.model_fields["milvus_search_threshold"].default
    same = [p["score"] for p in summary["pair_scores"] if p["same"]]
    diff = [p["score"] for p in summary["pair_scores"] if not p["same"]]
    false_matches = sum(s >= at["threshold"] for s in diff)
    false_non_matches = sum(s < at["threshold"] for s in same)
    assert (at["false_matches"], at["false_non_matches"]) == (false_matches, false_non_matches)
    assert at["fmr"] == pytest.approx(false_matches / len(diff), abs=1e-15)
    assert at["fnmr"] == pytest.approx(false_non_matches / len(same), abs=1e-15)
    assert summary["resolution"]["smallest_nonzero_fmr"] == pytest.approx(1 / len(diff))


def test_eer_and_the_threshold_for_the_target(master_run):
    summary = master_run[0]
    assert 0.0 <= summary["eer"]["eer"] <= 0.5
    diff = np.array([p["score"] for p in summary["pair_scores"] if not p["same"]])
    same = np.array([p["score"] for p in summary["pair_scores"] if p["same"]])
    (target,) = summary["targets"]
    assert target["target_fmr"] == 0.01
    t = target["threshold"]
    assert np.mean(diff >= t) <= 0.01
    assert target["fnmr"] == pytest.approx(np.mean(same < t), abs=1e-15)
    # lowest: the different-person score just below it would push the FMR over the target
    assert np.mean(diff >= target["above_score"]) > 0.01
    # on these photos every pair is classified correctly at the default threshold (docs/THRESHOLDS.md)
    assert summary["at_threshold"]["fmr"] == 0.0 and summary["at_threshold"]["fnmr"] == 0.0


def test_all_pairs_adds_every_unrelated_cross_pair(faces_dir: Path, tmp_path: Path):
    pivot = faces_dir / "face-recognition-pivot.csv"
    require(pivot.is_file(), f"{pivot} is missing")
    _run(pivot, "--all-pairs", "--json", tmp_path / "all.json", "--target-fmr", "0.001")
    summary = json.loads((tmp_path / "all.json").read_text())
    rows = _csv_rows(pivot)
    name = lambda path: Path(path).name  # noqa: E731 - the pivot CSV names photos by a longer path
    listed = {frozenset((name(r["file_x"]), name(r["file_y"]))) for r in rows}
    linked: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["decision"] == "Yes":
            linked[name(r["file_x"])].add(name(r["file_y"]))
            linked[name(r["file_y"])].add(name(r["file_x"]))

    def same_person_chain(a: str, b: str) -> bool:
        seen, todo = {a}, [a]
        while todo:
            for nxt in linked[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return b in seen

    added = [p for p in summary["pair_scores"] if not p["listed"]]
    assert len(added) == summary["pairs"]["added_different"] > 1000
    assert all(not p["same"] for p in added)
    keys = [frozenset((name(p["left"]), name(p["right"]))) for p in added]
    assert len(set(keys)) == len(keys) and not set(keys) & listed
    assert not any(same_person_chain(*sorted(k)) for k in keys)
    photos = {name(r["file_x"]) for r in rows} | {name(r["file_y"]) for r in rows}
    photos -= {name(p) for p in summary["photos"]["without_embedding"]}
    unrelated = sum(
        1 for a in photos for b in photos if a < b and frozenset((a, b)) not in listed and not same_person_chain(a, b)
    )
    assert len(added) == unrelated
    (target,) = summary["targets"]
    assert target["resolvable"]  # 1690 different-person pairs resolve 1e-3 (1/1690 = 5.9e-4)
    diff = np.array([p["score"] for p in summary["pair_scores"] if not p["same"]])
    assert np.mean(diff >= target["threshold"]) <= 0.001


def test_a_running_ml_service_gives_the_same_scores(ml_service, master_csv, master_run, tmp_path):
    """--ml-url: the service's /v1/embed and the in-process pipeline are the same computation."""
    _run(master_csv, "--ml-url", ml_service.url, "--token", ml_service.token, "--json", tmp_path / "http.json")
    over_http = json.loads((tmp_path / "http.json").read_text())
    in_process = master_run[0]
    assert over_http["model_id"] == in_process["model_id"]
    assert over_http["pairs"] == in_process["pairs"]
    a = np.array([p["score"] for p in over_http["pair_scores"]])
    b = np.array([p["score"] for p in in_process["pair_scores"]])
    np.testing.assert_allclose(a, b, atol=1e-5)  # the service rounds embeddings to 7 decimals


def test_photos_without_a_face_are_reported_and_their_pairs_left_out(master_csv: Path, tmp_path: Path):
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 128, dtype=np.uint8))  # a grey picture: no face
    assert ok
    (tmp_path / "grey.jpg").write_bytes(jpeg.tobytes())
    rows = _csv_rows(master_csv)
    same = [r for r in rows if r["decision"] == "Yes"][:4]
    different = [r for r in rows if r["decision"] == "No"][:6]
    folder = master_csv.parent
    lines = ["file_x,file_y,Decision"]
    lines += [f"{folder / r['file_x']},{folder / r['file_y']},{r['decision']}" for r in same + different]
    lines += [f"grey.jpg,{folder / same[0]['file_x']},Yes", f"{folder / different[0]['file_y']},grey.jpg,No"]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")

    stdout = _run(tmp_path / "pairs.csv", "--json", tmp_path / "out.json")
    summary = json.loads((tmp_path / "out.json").read_text())
    assert summary["photos"]["without_embedding"] == {"grey.jpg": "no_face"}
    assert "no embedding: grey.jpg (no_face)" in stdout
    pairs = summary["pairs"]
    assert (pairs["listed"], pairs["excluded"], pairs["excluded_same"], pairs["excluded_different"]) == (12, 2, 1, 1)
    assert (pairs["same"], pairs["different"]) == (4, 6)
    assert all("grey.jpg" not in (p["left"], p["right"]) for p in summary["pair_scores"])
