"""Case-search filters for images without a value: ``body_region=unknown`` selects the group ``radloop info`` calls
``unknown`` (the API, the CLI), and so does ``unknown`` for the other nullable columns (modality, view, laterality)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.core.catalog_info import catalog_info
from radloop.core.embeddings import write_shard
from radloop.core.schema import Image
from radloop.retrieval import search_cases
from test_retrieval_search import add_study_image

VERSION = "enc-walk20a"
#: one region per image: None (no region), "" (an older ingest's empty value) and two named regions
REGIONS = ("wrist", None, "elbow", None, "wrist", "", "elbow", None, "wrist", None, "elbow", None)


def _fill(catalog) -> list[str]:
    rng = np.random.default_rng(0)
    ids = []
    with catalog.session() as session:
        for i, region in enumerate(REGIONS):
            ids.append(add_study_image(session, i, region, modality="DX" if i % 2 else None))
    write_shard(catalog, VERSION, ids, rng.normal(size=(len(ids), 8)).astype(np.float32), normalized=False)
    return ids


def _no_region(ids: list[str]) -> set[str]:
    return {image_id for image_id, region in zip(ids, REGIONS) if not region}


def test_body_region_unknown_selects_the_images_info_counts_as_unknown(catalog):
    ids = _fill(catalog)
    assert catalog_info(catalog)["images_by_body_region"]["unknown"] == 6  # the five null regions and the one ""
    query = ids[0]  # a wrist image: the filter, not the query's region, decides
    for value in ("unknown", "Unknown", " UNKNOWN ", None):
        hits = search_cases(catalog, case_id=query, k=20, filters={"body_region": value}, encoder=VERSION)
        assert {hit.image_id for hit in hits} == _no_region(ids), value  # null and "" alike
        assert all(not hit.body_region for hit in hits)
    either = search_cases(catalog, case_id=ids[1], k=20, filters={"body_region": ["unknown", "elbow"]},
                          encoder=VERSION)
    assert {hit.image_id for hit in either} == (_no_region(ids) | {ids[2], ids[6], ids[10]}) - {ids[1]}
    # with another filter: both hold
    both = search_cases(catalog, case_id=query, k=20, filters={"body_region": "unknown", "modality": "DX"},
                        encoder=VERSION)
    assert {hit.image_id for hit in both} == {image_id for image_id in _no_region(ids) if int(image_id[-1], 16) % 2}


def test_unknown_for_the_other_nullable_columns_and_not_for_the_rest(catalog):
    ids = _fill(catalog)
    hits = search_cases(catalog, case_id=ids[1], k=20, filters={"modality": "unknown"}, encoder=VERSION)
    assert {hit.image_id for hit in hits} == set(ids[0::2])  # every even image has no modality
    views = search_cases(catalog, case_id=ids[0], k=20, filters={"view": "unknown"}, encoder=VERSION)
    assert len(views) == len(ids) - 1  # no image has a view
    assert len(search_cases(catalog, case_id=ids[0], k=20, filters={"laterality": "unknown"},
                            encoder=VERSION)) == len(ids) - 1
    with pytest.raises(ValueError, match="no image has dataset 'unknown'; values in the catalog: synthetic$"):
        search_cases(catalog, case_id=ids[0], filters={"dataset": "unknown"}, encoder=VERSION)
    with pytest.raises(ValueError, match=r"unknown body_region 'shoulders'; valid: .*wrist, unknown \(no value\)$"):
        search_cases(catalog, case_id=ids[0], filters={"body_region": "shoulders"}, encoder=VERSION)
    with pytest.raises(ValueError, match=r"no image has view 'AP'; values in the catalog: unknown \(no value\)$"):
        search_cases(catalog, case_id=ids[0], filters={"view": "AP"}, encoder=VERSION)


def test_a_stored_unknown_region_is_matched_with_the_missing_ones(catalog):
    ids = _fill(catalog)
    with catalog.session() as session:
        session.get(Image, ids[0]).body_region = "unknown"  # a source whose class name is "unknown"
    hits = search_cases(catalog, case_id=ids[2], k=20, filters={"body_region": "unknown"}, encoder=VERSION)
    assert {hit.image_id for hit in hits} == _no_region(ids) | {ids[0]}


def test_cli_search_filter_body_region_unknown(catalog, workspace):
    from radloop.app.cli import build_app

    ids = _fill(catalog)
    result = CliRunner().invoke(build_app(), [
        "search", "--case", ids[0], "--k", "20", "--filter", "body_region=unknown", "--encoder", VERSION, "--json",
        "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {hit["image_id"] for hit in payload["neighbours"]} == _no_region(ids)
    assert payload["filters"] == {"body_region": ["unknown"]}
    table = CliRunner().invoke(build_app(), [
        "search", "--case", ids[0], "--filter", "body_region=unknown", "--encoder", VERSION,
        "--workspace", str(workspace.root)])
    assert table.exit_code == 0 and "6 neighbours" in table.output, table.output  # 5 null, 1 empty


def test_an_empty_filter_value_is_named_as_such(catalog, workspace):
    from radloop.app.cli import build_app
    from radloop.retrieval.search import parse_filters

    ids = _fill(catalog)
    with pytest.raises(ValueError, match=r"^filter 'body_region' has an empty value \(body_region=unknown selects "
                                         r"the images without one\)$"):
        parse_filters(["body_region="])
    with pytest.raises(ValueError, match=r"^filter 'finding' has an empty value$"):
        search_cases(catalog, case_id=ids[0], filters={"finding": " "}, encoder=VERSION)
    result = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--filter", "body_region=", "--encoder",
                                              VERSION, "--workspace", str(workspace.root)])
    assert result.exit_code == 2 and "error: filter 'body_region' has an empty value" in result.output, result.output
