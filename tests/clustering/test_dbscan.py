"""dbscan_cosine: scikit-learn's DBSCAN(metric="cosine") labels, checked by hand, against a literal O(n²) port
of scikit-learn's algorithm, across chunk sizes, and on real face embeddings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from faceauth.clustering import NOISE, dbscan_cosine
from tests.conftest import require


def on_circle(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def eps_for_degrees(angle: float) -> float:
    """The cosine distance of two unit vectors ``angle`` degrees apart."""
    return 1.0 - math.cos(math.radians(angle))


def reference_dbscan(x: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """The straightforward way: the full distance matrix, then scikit-learn's expansion loop as written."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    neighbours = [np.flatnonzero(row <= eps) for row in distance]
    core = [len(nb) >= min_samples for nb in neighbours]
    labels = np.full(len(x), -1)
    cluster = 0
    for i in range(len(x)):
        if labels[i] != -1 or not core[i]:
            continue
        stack = [i]
        while stack:
            j = stack.pop()
            if labels[j] != -1:
                continue
            labels[j] = cluster
            if core[j]:
                stack.extend(int(v) for v in neighbours[j] if labels[v] == -1)
        cluster += 1
    return labels


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == c).tolist()) for c in set(labels.tolist()) - {NOISE}}


# -- by hand ---------------------------------------------------------------------------------------------------


def test_two_arcs_and_an_outlier():
    x = on_circle(0, 2, 4, 90, 92, 94, 200)
    labels = dbscan_cosine(x, eps=eps_for_degrees(3), min_samples=2)
    # 0 and 4 degrees are too far apart themselves, but 2 joins them (chaining through core points).
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, -1]
    assert labels.dtype == np.int64


def test_only_the_direction_counts():
    x = on_circle(0, 2, 4, 90, 92, 94, 200) * np.array([[1.0], [7.5], [0.01], [3.0], [1e4], [0.2], [42.0]])
    assert dbscan_cosine(x, eps=eps_for_degrees(3), min_samples=2).tolist() == [0, 0, 0, 1, 1, 1, -1]


def test_three_d_clusters_noise_and_numbering_by_first_core_point():
    rng = np.random.default_rng(7)
    near_z = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.01, (4, 3))
    near_x = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.01, (5, 3))
    lonely = np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
    # order: a lonely point, then x and z interleaved, so the x cluster's first core point comes first
    x = np.vstack([lonely[:1], near_x[:2], near_z[:1], near_x[2:], near_z[1:], lonely[1:]])
    labels = dbscan_cosine(x, eps=0.01, min_samples=3)
    assert labels.tolist() == [-1, 0, 0, 1, 0, 0, 0, 1, 1, 1, -1, -1]


def test_border_point_joins_the_cluster_whose_core_comes_first():
    # Cores at 1 and 3 degrees (4 neighbours each within 1.2 degrees); 2 degrees is reached by both but has
    # only 3 neighbours itself: a border point. It belongs to whichever cluster starts first.
    a, b, border = [0.0, 0.5, 1.0], [3.0, 3.5, 4.0], [2.0]
    eps = eps_for_degrees(1.2)
    assert dbscan_cosine(on_circle(*a, *border, *b), eps=eps, min_samples=4).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert dbscan_cosine(on_circle(*b, *border, *a), eps=eps, min_samples=4).tolist() == [0, 0, 0, 0, 1, 1, 1]
    # listed first, the border point still takes the lowest-numbered cluster: that of the first core point
    assert dbscan_cosine(on_circle(*border, *b, *a), eps=eps, min_samples=4).tolist() == [0, 0, 0, 0, 1, 1, 1]
    # with 3 samples enough, the border point is a core point and bridges the two into one cluster
    assert dbscan_cosine(on_circle(*a, *border, *b), eps=eps, min_samples=3).tolist() == [0] * 7


def test_min_samples_one_makes_every_point_a_cluster_member():
    labels = dbscan_cosine(on_circle(0, 1, 50, 51, 52, 180), eps=eps_for_degrees(1.5), min_samples=1)
    assert labels.tolist() == [0, 0, 1, 1, 1, 2]


def test_everything_is_noise_or_one_cluster():
    x = on_circle(0, 90, 180, 270)
    assert dbscan_cosine(x, eps=0.5, min_samples=2).tolist() == [-1, -1, -1, -1]
    assert dbscan_cosine(x, eps=2.0, min_samples=4).tolist() == [0, 0, 0, 0]  # distance 2 is within eps 2
    assert dbscan_cosine(np.array([[3.0, 4.0]]), eps=0.1, min_samples=1).tolist() == [0]
    assert dbscan_cosine(np.array([[3.0, 4.0]]), eps=0.1, min_samples=2).tolist() == [-1]


def test_duplicates_are_at_distance_zero():
    x = np.array([[1.0, 2.0, 3.0]] * 3 + [[-1.0, 0.5, 0.0]])
    assert dbscan_cosine(x, eps=1e-9, min_samples=3).tolist() == [0, 0, 0, -1]


# -- against the reference -------------------------------------------------------------------------------------


def blobs(seed: int, n: int = 240, dim: int = 6) -> np.ndarray:
    """A few direction clusters of different spreads and sizes, plus scattered points."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.multinomial(n - n // 6, np.ones(5) / 5)
    spreads = rng.uniform(0.05, 0.4, size=5)
    parts = [c + rng.normal(0, s, (k, dim)) for c, s, k in zip(centres, spreads, sizes, strict=True)]
    parts.append(rng.normal(size=(n // 6, dim)))
    x = np.vstack(parts)
    return x[rng.permutation(len(x))]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eps", [0.005, 0.02, 0.06, 0.15, 0.4])
def test_matches_the_reference(seed, eps):
    x = blobs(seed)
    for min_samples in (1, 3, 5, 12):
        expected = reference_dbscan(x, eps, min_samples)
        labels = dbscan_cosine(x, eps=eps, min_samples=min_samples, chunk=64)
        assert partition(labels) == partition(expected)
        assert set(np.flatnonzero(labels == NOISE)) == set(np.flatnonzero(expected == NOISE))
        assert labels.tolist() == expected.tolist()  # the numbering too


def test_the_reference_comparison_is_not_trivial():
    """The parameters above give clusters, noise and border points, not just one of them."""
    x = blobs(0)
    labels = reference_dbscan(x, 0.06, 5)
    assert len(partition(labels)) >= 3 and 0 < np.sum(labels == NOISE) < len(x) / 2


@pytest.mark.parametrize("seed", range(3))
def test_chunking_does_not_change_the_labels(seed):
    x = blobs(seed, n=301)
    for eps, min_samples in ((0.02, 3), (0.15, 5)):
        reference = dbscan_cosine(x, eps=eps, min_samples=min_samples)
        for chunk in (1, 3, 7, 300, 301, 1024):
            assert dbscan_cosine(x, eps=eps, min_samples=min_samples, chunk=chunk).tolist() == reference.tolist()


def test_float32_input():
    x = blobs(3)
    labels = dbscan_cosine(x.astype(np.float32), eps=0.06, min_samples=5)
    assert partition(labels) == partition(reference_dbscan(x, 0.06, 5))


# -- invalid input ---------------------------------------------------------------------------------------------

GOOD = np.eye(3)


@pytest.mark.parametrize("eps", [0.0, -0.1, 2.0001, 3, float("nan"), float("inf"), "0.5", None, True])
def test_eps_out_of_range(eps):
    with pytest.raises(ValueError, match="eps"):
        dbscan_cosine(GOOD, eps=eps, min_samples=2)


@pytest.mark.parametrize("min_samples", [0, -3, 1.5, True, "2", None])
def test_min_samples_invalid(min_samples):
    with pytest.raises(ValueError, match="min_samples"):
        dbscan_cosine(GOOD, eps=0.5, min_samples=min_samples)


def test_chunk_invalid():
    with pytest.raises(ValueError, match="chunk"):
        dbscan_cosine(GOOD, eps=0.5, min_samples=2, chunk=0)


@pytest.mark.parametrize(
    "embeddings",
    [
        np.ones(5),  # 1-D
        np.ones((2, 3, 4)),  # 3-D
        np.empty((0, 4)),  # no rows
        np.empty((3, 0)),  # no columns
        np.array([[1.0, np.nan], [1.0, 0.0]]),
        np.array([[1.0, np.inf], [1.0, 0.0]]),
        np.array([[1.0, 0.0], [0.0, 0.0]]),  # a zero vector has no direction
        np.array([["a", "b"]]),
        np.array([[1 + 1j, 0]]),
        [[1.0, 0.0], [0.0]],  # ragged
    ],
)
def test_bad_embeddings(embeddings):
    with pytest.raises(ValueError):
        dbscan_cosine(embeddings, eps=0.5, min_samples=2)


def test_integer_and_list_input_is_accepted():
    assert dbscan_cosine([[1, 0], [2, 0], [0, 5]], eps=0.1, min_samples=2).tolist() == [0, 0, -1]


# -- real faces ------------------------------------------------------------------------------------------------


def test_real_faces_of_three_people_cluster_by_person(faces_dir: Path):
    from bench import calibrate

    master = faces_dir / "master.csv"
    require(master.is_file(), f"{master} is missing")
    pairs = calibrate.read_pairs(master)
    groups: dict[str, list[str]] = {}
    for photo, root in sorted(calibrate.identity_groups(pairs).items()):
        groups.setdefault(root, []).append(photo)
    people = sorted(groups.values(), key=len, reverse=True)
    chosen = people[:3]  # the three people with the most photos
    strangers = [group[0] for group in people[3:6]]  # one photo each of three more: no second photo, noise
    assert len(chosen) == 3 and all(len(g) >= 2 for g in chosen) and len(strangers) == 3

    embed, model_id = calibrate.in_process_embedder()
    photos = [photo for group in chosen for photo in group] + strangers
    vectors = []
    for photo in photos:
        vector, issue = embed((faces_dir / photo).read_bytes(), photo)
        assert vector is not None, f"{photo}: {issue}"
        vectors.append(vector)
    # The default search threshold 0.35 as a cosine distance.
    labels = dbscan_cosine(np.stack(vectors), eps=1 - 0.35, min_samples=2)
    print(f"\n{model_id}: {dict(zip(photos, labels.tolist(), strict=True))}")
    start = 0
    for number, group in enumerate(chosen):
        assert labels[start : start + len(group)].tolist() == [number] * len(group), group
        start += len(group)
    assert labels[start:].tolist() == [NOISE] * len(strangers)


def test_the_pair_budget_stops_a_dense_input_early():
    from faceauth.clustering import PairBudgetExceeded

    x = np.ones((20000, 1))  # 4e8 neighbour pairs: the old expansion needed ~29 GB
    with pytest.raises(PairBudgetExceeded):
        dbscan_cosine(x, eps=0.5, min_samples=2, max_pairs=1_000_000)


def test_a_dense_input_clusters_in_bounded_memory():
    import tracemalloc

    x = np.ones((3000, 8), dtype=np.float32)  # 9e6 pairs: +661 MB with the pairs expanded
    tracemalloc.start()
    try:
        labels = dbscan_cosine(x, eps=0.5, min_samples=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.tolist() == [0] * 3000
    assert peak < 120 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
