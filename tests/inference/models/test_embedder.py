from __future__ import annotations

import numpy as np

from faceauth.inference.alignment import align_face


def test_batch_embedding_equals_one_by_one(service, photo_bytes):
    embedder = service.pipeline.models.require("embedder")
    detector = service.pipeline.models.require("detector")
    crops = []
    for name in ("img1.jpg", "img2.jpg", "img20.jpg"):
        image = service.pipeline.decode(photo_bytes(name))
        crops.append(align_face(image.rgb, detector.detect(image.rgb)[0].landmarks))
    together = embedder.embed_aligned(crops)
    alone = np.stack([embedder.embed_aligned([c])[0] for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)
