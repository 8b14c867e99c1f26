"""The case search page's region picker offers ``unknown`` once, however the catalog stores "no region" (walk 21a)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from conftest import data_path
from test_app_pages import open_page


def test_images_without_a_region_stored_as_null_and_as_empty_give_one_unknown_option(catalog, env):
    from app_workspace import _add_image

    sources = [data_path("iu_xray_images", "CXR3_IM-1384-1001.png"),
               *sorted(data_path("nih_cxr14_labels_samples", "images").glob("*.png"))[:2]]
    assert len(sources) == 3
    with catalog.session() as session:
        for source, region in zip(sources, ("chest", None, "")):  # "": what an older ingest wrote for no region
            _add_image(session, catalog.workspace, source, dataset="iu_xray", body_region=region, split="test",
                       meta={})
    app = open_page(catalog.workspace.root, "page_search.py", env)
    options = app.selectbox(key="search_region").options
    assert options.count("unknown") == 1 and sorted(options) == ["all", "chest", "unknown"], options
