"""The app's region table and case picker treat an empty-string region like a missing one: one `unknown` row
(there were two), and picking `unknown` lists the images stored with "" too (it listed only the null ones)."""

from __future__ import annotations

from sqlalchemy import update

from noise_images import ingest_noise_images


def test_empty_and_null_regions_are_one_unknown_row_and_one_pick(tmp_path, catalog):
    from radloop.app import views
    from radloop.core.schema import Image

    ids = ingest_noise_images(catalog, tmp_path / "images", 4, seed=2)
    with catalog.session() as session:
        session.execute(update(Image).where(Image.id == ids[0]).values(body_region=""))
        session.execute(update(Image).where(Image.id == ids[1]).values(body_region="wrist"))
        session.commit()
    counts = views.region_counts(catalog)
    assert counts.to_dict("records") == [{"body_region": "unknown", "images": 3, "studies": 3},
                                         {"body_region": "wrist", "images": 1, "studies": 1}]
    picked = views.list_cases(catalog, body_region="unknown")
    assert sorted(picked["image_id"]) == sorted(set(ids) - {ids[1]})
