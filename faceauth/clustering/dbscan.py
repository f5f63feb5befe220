"""DBSCAN over face embeddings with the cosine distance, in numpy only and in bounded memory.

The labels are those of scikit-learn's ``DBSCAN(eps=eps, min_samples=min_samples, metric="cosine")``:

* the distance of two rows is 1 - cos(angle), so ``eps`` is in (0, 2] (0.65 = cosine similarity >= 0.35);
* a point is a core point when at least ``min_samples`` points, itself included, lie within ``eps`` (<=);
* core points within ``eps`` of each other are in one cluster; clusters are numbered 0, 1, ... in the order
  of their lowest-index core point (scikit-learn starts a cluster at each unlabelled core point in index
  order and expands it fully before the next);
* a non-core point within ``eps`` of a core point (a border point) joins the first cluster whose expansion
  reaches it, i.e. the lowest-numbered cluster among its core neighbours; any other point is noise, -1.

Work is bounded in memory and in time, whatever the input:

* similarities are computed a block of rows at a time (a ``chunk x n`` block, never ``n x n``), with the block
  sized so that it holds at most ``BLOCK_CELLS`` cells;
* pass 1 counts each point's neighbours and stops with ``PairBudgetExceeded`` as soon as the running total of
  neighbour pairs passes ``max_pairs`` (20,000 identical vectors are 4e8 pairs: refused after one block);
* pass 2 recomputes each block of core rows and merges its core-to-core edges into one union-find (hooking roots
  onto smaller roots, then pointer jumping) before the next block: the pairs are never expanded or kept;
* pass 3 gives each border point the lowest cluster among its core neighbours, again a block at a time.
"""

from __future__ import annotations

import numpy as np

NOISE = -1


def _validated(embeddings: np.ndarray, eps: float, min_samples: int, chunk: int) -> np.ndarray:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.floating | np.integer):
        raise ValueError(f"eps must be a number, got {type(eps).__name__}")
    if not (0.0 < float(eps) <= 2.0):  # also rejects NaN
        raise ValueError(f"eps must be in (0, 2] for the cosine distance, got {eps}")
    for name, value in (("min_samples", min_samples), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    x = np.asarray(embeddings)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"embeddings must be real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n, dim), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"embeddings must hold at least one non-empty row, got shape {x.shape}")
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise ValueError(f"zero vector(s) have no cosine distance: rows {zero[:10].tolist()}")
    return x / norms[:, None].astype(x.dtype)


class PairBudgetExceeded(ValueError):
    """More neighbour pairs than the caller's budget: the input is too dense (or eps too large) to cluster."""

    def __init__(self, max_pairs: int) -> None:
        super().__init__(f"more than {max_pairs} neighbour pairs")
        self.max_pairs = max_pairs


# Cells of one similarity block: 1M (4 MB of float32 similarities); a block's edges, as int64 index pairs and
# their union-find temporaries, cost about 50 bytes a cell at worst, so a block stays near 50 MB.
BLOCK_CELLS = 1024 * 1024


def _row_blocks(rows: np.ndarray, n: int, chunk: int | None):
    step = chunk if chunk is not None else max(1, min(1024, BLOCK_CELLS // max(n, 1)))
    for start in range(0, len(rows), step):
        yield rows[start : start + step]


def _within(unit: np.ndarray, rows: np.ndarray, eps: float) -> np.ndarray:
    """rows x n: which points lie within eps of each of `rows` (a point is its own neighbour)."""
    if eps >= 2.0:  # distances are clipped to [0, 2]: with eps = 2 every point is a neighbour
        within = np.ones((len(rows), unit.shape[0]), dtype=bool)
    else:
        distance = unit[rows] @ unit.T
        # The distance is computed first, 1 - similarity, as scikit-learn does, so the boundary agrees.
        np.subtract(1.0, distance, out=distance)
        within = distance <= eps
        del distance
    within[np.arange(len(rows)), rows] = True
    return within


def neighbour_counts(unit: np.ndarray, eps: float, chunk: int | None, max_pairs: int | None) -> np.ndarray:
    """Each point's neighbour count (itself included); PairBudgetExceeded once their sum passes max_pairs."""
    n = unit.shape[0]
    counts = np.empty(n, dtype=np.int64)
    total = 0
    for rows in _row_blocks(np.arange(n), n, chunk):
        block = np.count_nonzero(_within(unit, rows, eps), axis=1)
        counts[rows] = block
        total += int(block.sum())
        if max_pairs is not None and total > max_pairs:
            raise PairBudgetExceeded(max_pairs)
    return counts


def _union(parent: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """Merge the edges (left[k], right[k]) into `parent` in place. Invariants kept: parent[x] <= x, and every
    node points straight at its root (the component's smallest node)."""
    while True:
        a, b = parent[left], parent[right]
        differ = a != b
        if not differ.any():
            return
        a, b = a[differ], b[differ]
        left, right = left[differ], right[differ]  # edges already inside one component stay so
        # Hook every root onto the smallest root it is joined to (no cycles: a root only moves down) ...
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        # ... then point every node straight at its root.
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent[:] = grand


def dbscan_cosine(
    embeddings: np.ndarray,
    *,
    eps: float,
    min_samples: int,
    chunk: int | None = None,
    max_pairs: int | None = None,
) -> np.ndarray:
    """Cluster labels (int64, -1 = noise) of the rows of ``embeddings`` under the cosine distance.

    Same labels as ``sklearn.cluster.DBSCAN(eps=eps, min_samples=min_samples, metric="cosine")``; see the
    module docstring. ``chunk``: rows per similarity block (default: sized by ``BLOCK_CELLS``). Raises
    PairBudgetExceeded past ``max_pairs`` neighbour pairs (each point counts itself), and ValueError for eps
    outside (0, 2], min_samples < 1, a non-2-D, empty or non-finite input, or a zero row.
    """
    unit = _validated(embeddings, eps, min_samples, 1 if chunk is None else chunk)
    n = unit.shape[0]
    counts = neighbour_counts(unit, eps, chunk, max_pairs)
    core = counts >= min_samples
    labels = np.full(n, NOISE, dtype=np.int64)
    if not core.any():
        return labels

    # Pass 2: core-to-core edges, block by block, into one union-find.
    parent = np.arange(n, dtype=np.int64)
    core_rows = np.flatnonzero(core)
    for rows in _row_blocks(core_rows, n, chunk):
        within = _within(unit, rows, eps)
        within &= core[None, :]
        r, c = np.nonzero(within)
        del within
        lower = c < rows[r]  # each undirected edge once, self edges dropped
        _union(parent, rows[r[lower]], c[lower].astype(np.int64))

    # Clusters numbered by their lowest core point (the component root, which is its smallest member).
    core_roots = parent[core]
    ordered_roots = np.unique(core_roots)
    labels[core] = np.searchsorted(ordered_roots, core_roots)

    # Pass 3: a border point takes the lowest-numbered cluster among its core neighbours.
    core_labels = np.where(core, labels, np.iinfo(np.int64).max)
    for rows in _row_blocks(np.flatnonzero(~core & (counts > 1)), n, chunk):
        within = _within(unit, rows, eps)
        best = np.where(within, core_labels[None, :], np.iinfo(np.int64).max).min(axis=1)
        reached = best != np.iinfo(np.int64).max
        labels[rows[reached]] = best[reached]
    return labels
