"""`radloop info` counts an empty-string value with the null ones as `unknown` (it listed a `""` group, while
the search filter and the app treat both as unknown)."""

from __future__ import annotations

from sqlalchemy import update

from noise_images import ingest_noise_images


def test_empty_and_null_regions_are_one_unknown_group(tmp_path, catalog):
    from radloop.core.catalog_info import catalog_info
    from radloop.core.schema import Image

    ids = ingest_noise_images(catalog, tmp_path / "images", 4, seed=1)
    with catalog.session() as session:
        session.execute(update(Image).where(Image.id == ids[0]).values(body_region=""))
        session.execute(update(Image).where(Image.id == ids[1]).values(body_region="wrist"))
        session.commit()
    assert catalog_info(catalog)["images_by_body_region"] == {"unknown": 3, "wrist": 1}
