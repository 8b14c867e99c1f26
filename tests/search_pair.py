"""Two catalogued images embedded by a registered random encoder: the smallest catalog a case search runs on."""

from __future__ import annotations

import numpy as np


def two_embedded_images(catalog, version: str, *, seed: int = 0, source: str = "/nowhere/{}.png") -> np.ndarray:
    """Register a random ResNet-18 encoder as ``version``, catalogue two random 40 x 40 images ``I-0`` and ``I-1``
    (source paths ``source`` with their number) and store their embeddings; returns their pixels (2, 40, 40)."""
    from radloop.core.embeddings import write_shard
    from radloop.core.schema import Image, Study
    from radloop.ssl import embed_images
    from test_retrieval_search import register_random_resnet

    saved = register_random_resnet(catalog, version)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(2, 40, 40), dtype=np.uint8)
    with catalog.session() as session:
        for i in range(2):
            session.add(Study(id=f"S-{i}", dataset="t", split="train"))
            session.flush()
            session.add(Image(id=f"I-{i}", study_id=f"S-{i}", content_hash=f"{i}" * 64, dataset="t",
                              source_path=source.format(i), source_format="png", render_path=f"r{i}.png",
                              thumb_path=f"t{i}.png", width=40, height=40, render_width=40, render_height=40))
    write_shard(catalog, version, ["I-0", "I-1"], embed_images(saved, list(pixels)), normalized=True)
    return pixels
