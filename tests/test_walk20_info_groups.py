"""`radloop info` counts an empty-string value with the null ones as `unknown` (it listed a `""` group, while
the search filter and the app treat both as unknown)."""

from __future__ import annotations

from noise_images import images_with_an_empty_region


def test_empty_and_null_regions_are_one_unknown_group(tmp_path, catalog):
    from radloop.core.catalog_info import catalog_info

    images_with_an_empty_region(catalog, tmp_path / "images", seed=1)
    assert catalog_info(catalog)["images_by_body_region"] == {"unknown": 3, "wrist": 1}
