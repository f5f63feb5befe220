"""Recognition and quality checks on real labelled photos (the 300 pairs of deepface/master.csv)."""

from __future__ import annotations

import numpy as np
import pytest

from faceauth.config import DEFAULT_MATCH_THRESHOLD


@pytest.fixture(scope="module")
def embeddings(service, faces_dir, labelled_pairs) -> dict[str, np.ndarray]:
    names = sorted({p.left for p in labelled_pairs} | {p.right for p in labelled_pairs})
    out = {}
    for name in names:
        analysis = service.pipeline.analyze((faces_dir / name).read_bytes(), frozenset({"embed"}))
        assert analysis.embedding is not None, f"no face found in {name}"
        out[name] = analysis.embedding
    return out


def _describe(scores: np.ndarray) -> str:
    q = np.percentile(scores, [0, 5, 50, 95, 100])
    return "min {:.3f}  p5 {:.3f}  median {:.3f}  p95 {:.3f}  max {:.3f}".format(*q)


def test_embeddings_are_512d_unit_vectors(embeddings):
    matrix = np.stack(list(embeddings.values()))
    assert matrix.shape[1] == 512
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_labelled_pairs_separate_at_the_default_threshold(embeddings, labelled_pairs):
    same = np.array([embeddings[p.left] @ embeddings[p.right] for p in labelled_pairs if p.same])
    diff = np.array([embeddings[p.left] @ embeddings[p.right] for p in labelled_pairs if not p.same])
    correct = int((same > DEFAULT_MATCH_THRESHOLD).sum() + (diff < DEFAULT_MATCH_THRESHOLD).sum())
    print(f"\nthreshold {DEFAULT_MATCH_THRESHOLD}: accuracy {correct}/{len(labelled_pairs)}")
    print(f"same person      ({len(same):3d} pairs): {_describe(same)}")
    print(f"different people ({len(diff):3d} pairs): {_describe(diff)}")
    assert len(same) == 38 and len(diff) == 262
    failures = [
        (p.left, p.right, round(float(embeddings[p.left] @ embeddings[p.right]), 3))
        for p in labelled_pairs
        if (embeddings[p.left] @ embeddings[p.right] > DEFAULT_MATCH_THRESHOLD) != p.same
    ]
    assert failures == []


def test_quality_scores_on_real_photos_are_probabilities(service, faces_dir):
    """Prints the spoof / blur / nsfw distributions over the photo set (they are web photos, not selfies)."""
    spoof, blur, nsfw = [], [], []
    for path in sorted(faces_dir.glob("*.jpg")):
        a = service.pipeline.analyze(path.read_bytes(), frozenset({"nsfw", "spoof", "blur"}))
        spoof.append(a.probabilities.get("spoof"))
        blur.append(a.probabilities.get("blur"))
        nsfw.append(a.probabilities.get("nsfw"))
    for name, values in (("P(spoof)", spoof), ("P(blur)", blur), ("P(nsfw)", nsfw)):
        arr = np.array(values, dtype=float)
        assert np.all((arr >= 0) & (arr <= 1)), name
        print(f"\n{name:9s} over {len(arr)} photos: {_describe(arr)}")
    assert max(nsfw) < 0.5  # no photo in the set is explicit
