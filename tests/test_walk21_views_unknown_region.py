"""The app's region table and case picker treat an empty-string region like a missing one: one `unknown` row
(there were two), and picking `unknown` lists the images stored with "" too (it listed only the null ones)."""

from __future__ import annotations

from noise_images import images_with_an_empty_region


def test_empty_and_null_regions_are_one_unknown_row_and_one_pick(tmp_path, catalog):
    from radloop.app import views

    ids = images_with_an_empty_region(catalog, tmp_path / "images", seed=2)
    counts = views.region_counts(catalog)
    assert counts.to_dict("records") == [{"body_region": "unknown", "images": 3, "studies": 3},
                                         {"body_region": "wrist", "images": 1, "studies": 1}]
    picked = views.list_cases(catalog, body_region="unknown")
    assert sorted(picked["image_id"]) == sorted(set(ids) - {ids[1]})
