"""A synthetic `bench catalog` workspace gives every image a thumbnail as well as a render, so `radloop info
--check-renders` on it finds nothing missing (it reported every thumbnail as missing: none were made)."""

from __future__ import annotations


def test_synthetic_catalog_passes_the_render_check(tmp_path):
    from radloop.core.catalog import Catalog
    from radloop.core.catalog_info import catalog_info
    from radloop.core.catalog_synth import build_synthetic_catalog, synthetic_workspace

    catalog = Catalog.open(synthetic_workspace(tmp_path / "ws"))
    build_synthetic_catalog(catalog, 40, encoder=False, embed=False)
    result = catalog_info(catalog, check_renders=True)
    assert result["images_with_render_problem"] == 0, result["render_problem_samples"]
    assert sum(1 for _ in (tmp_path / "ws" / "thumbs").rglob("I-*.png")) == result["counts"]["images"] == 40
