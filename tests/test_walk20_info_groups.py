"""`radloop info` counts an empty-string value with the null ones as `unknown` (it listed a `""` group, while
the search filter and the app treat both as unknown)."""

from __future__ import annotations

from sqlalchemy import update


def test_empty_and_null_regions_are_one_unknown_group(tmp_path, catalog):
    import numpy as np
    from PIL import Image as PILImage

    from radloop.core.catalog_info import catalog_info
    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        PILImage.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"x{index}.png")
    ingest_paths(catalog, [folder], workers=1)
    with catalog.session() as session:
        ids = sorted(session.scalars(Image.__table__.select().with_only_columns(Image.id)))
        session.execute(update(Image).where(Image.id == ids[0]).values(body_region=""))
        session.execute(update(Image).where(Image.id == ids[1]).values(body_region="wrist"))
        session.commit()
    assert catalog_info(catalog)["images_by_body_region"] == {"unknown": 3, "wrist": 1}
