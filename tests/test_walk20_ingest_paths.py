"""Ingest stores absolute source paths (a relative input made them depend on the folder the run started in:
render restores and the pretraining's 16-bit originals then missed them), and `radloop ingest .` names its
dataset after the folder (was an empty name)."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select


def test_relative_inputs_are_stored_absolute_and_dot_names_the_dataset(tmp_path, catalog, monkeypatch):
    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image

    folder = tmp_path / "wrist_xrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        PILImage.fromarray(rng.integers(0, 255, (64, 48), dtype=np.uint8)).save(folder / f"case{index}.png")
    monkeypatch.chdir(folder)
    summary = ingest_paths(catalog, ["."], workers=1)
    assert summary.images_added == 2
    with catalog.session() as session:
        rows = session.execute(select(Image.dataset, Image.source_path)).all()
    assert {dataset for dataset, _ in rows} == {"wrist_xrays"}
    assert sorted(path for _, path in rows) == [str(folder / "case0.png"), str(folder / "case1.png")]
    monkeypatch.chdir(tmp_path)  # the same files by another relative path: the same images, nothing added
    again = ingest_paths(catalog, ["wrist_xrays"], workers=1)
    assert again.images_added == 0 and again.images_skipped_existing == 2

