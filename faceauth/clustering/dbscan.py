"""DBSCAN over face embeddings with the cosine distance, in numpy only and in bounded memory.

The labels are those of scikit-learn's ``DBSCAN(eps=eps, min_samples=min_samples, metric="cosine")``:

* the distance of two rows is 1 - cos(angle), so ``eps`` is in (0, 2] (0.65 = cosine similarity >= 0.35);
* a point is a core point when at least ``min_samples`` points, itself included, lie within ``eps`` (<=);
* core points within ``eps`` of each other are in one cluster; clusters are numbered 0, 1, ... in the order
  of their lowest-index core point (scikit-learn starts a cluster at each unlabelled core point in index
  order and expands it fully before the next);
* a non-core point within ``eps`` of a core point (a border point) joins the first cluster whose expansion
  reaches it, i.e. the lowest-numbered cluster among its core neighbours; any other point is noise, -1.

Neighbourhoods are found ``chunk`` rows at a time (a ``chunk x n`` block of similarities, never ``n x n``) and
kept as int32 neighbour lists; memory is about ``chunk * n`` floats plus 8 bytes per neighbour pair.
Connected components of the core points come from a vectorised union-find (hooking roots onto smaller
roots, then pointer jumping), so no Python loop runs per point or per edge.
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


def neighbourhoods(unit: np.ndarray, eps: float, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR neighbour lists of unit rows: row i's neighbours (itself included) are
    ``indices[indptr[i]:indptr[i + 1]]``, ascending; ``indices`` is int32."""
    n = unit.shape[0]
    if n > np.iinfo(np.int32).max:
        raise ValueError("too many points for int32 neighbour lists")
    counts = np.empty(n, dtype=np.int64)
    parts: list[np.ndarray] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        distance = unit[start:stop] @ unit.T
        # The distance is computed first, 1 - similarity, as scikit-learn does, so the boundary agrees; it
        # clips distances to [0, 2], so with eps = 2 every point is a neighbour.
        np.subtract(1.0, distance, out=distance)
        within = distance <= eps if eps < 2.0 else np.ones(distance.shape, dtype=bool)
        del distance
        within[np.arange(stop - start), np.arange(start, stop)] = True  # a point is its own neighbour
        counts[start:stop] = np.count_nonzero(within, axis=1)
        flat = np.flatnonzero(within)  # row-major: each row's neighbours in ascending order
        del within
        parts.append((flat % n).astype(np.int32))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)
    return indptr, indices


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Root of each node's connected component under the edges (left[k], right[k]); the root is the
    component's smallest node."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        a, b = parent[left], parent[right]
        differ = a != b
        if not differ.any():
            return parent
        a, b = a[differ], b[differ]
        # Hook every root onto the smallest root it is joined to (parent[x] <= x always: no cycles) ...
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
        # ... then point every node straight at its root.
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def dbscan_cosine(embeddings: np.ndarray, *, eps: float, min_samples: int, chunk: int = 1024) -> np.ndarray:
    """Cluster labels (int64, -1 = noise) of the rows of ``embeddings`` under the cosine distance.

    Same labels as ``sklearn.cluster.DBSCAN(eps=eps, min_samples=min_samples, metric="cosine")``; see the
    module docstring. Raises ValueError for eps outside (0, 2], min_samples < 1, a non-2-D, empty or
    non-finite input, or a zero row.
    """
    unit = _validated(embeddings, eps, min_samples, chunk)
    n = unit.shape[0]
    indptr, indices = neighbourhoods(unit, eps, chunk)
    counts = np.diff(indptr)
    core = counts >= min_samples
    labels = np.full(n, NOISE, dtype=np.int64)
    if not core.any():
        return labels

    # Edges out of core points only: expansion walks from core points (as in sklearn, whose lists are per row).
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    from_core = core[owner]
    owner, target = owner[from_core], indices[from_core].astype(np.int64)
    del from_core
    to_core = core[target]
    roots = _components(n, owner[to_core], target[to_core])

    # Clusters numbered by their lowest core point (the component root, which is its smallest member).
    core_roots = roots[core]
    ordered_roots = np.unique(core_roots)
    labels[core] = np.searchsorted(ordered_roots, core_roots)

    # Border points: the lowest-numbered cluster among the core points that list them.
    border = ~to_core
    if border.any():
        candidate = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(candidate, target[border], labels[owner[border]])
        reached = (~core) & (candidate != np.iinfo(np.int64).max)
        labels[reached] = candidate[reached]
    return labels
