"""Filter keys ignore case and take ``-`` for ``_`` (walk 22l): ``--filter Body_Region=wrist`` was refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from radloop.retrieval.search import check_filters, parse_filters, search_cases
from test_retrieval_search import VERSION, _fill


@pytest.mark.parametrize("given", ["Body_Region=wrist", "BODY_REGION=wrist", "body-region=wrist",
                                   " Body-Region =wrist"])
def test_a_filter_key_ignores_case_and_takes_a_dash_for_the_underscore(given):
    assert parse_filters([given]) == {"body_region": ["wrist"]}


def test_two_spellings_of_one_key_are_one_key_and_unknown_keys_are_still_refused():
    assert check_filters({"Body_Region": "wrist", "body_region": ["elbow", "wrist"]}) == {
        "body_region": ["wrist", "elbow"]}
    with pytest.raises(ValueError, match=r"unknown filter 'Regio'; valid: body_region, finding, split"):
        parse_filters(["Regio=wrist"])


def test_search_and_the_cli_take_a_key_in_another_case(catalog, workspace):
    from radloop.app.cli import build_app

    ids, _ = _fill(catalog)
    hits = search_cases(catalog, case_id=ids[0], k=50, filters={"Body_Region": "Elbow"}, encoder=VERSION)
    assert hits and all(hit.body_region == "elbow" for hit in hits)
    result = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--filter", "Body_Region=wrist",
                                              "--encoder", VERSION, "--workspace", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert '"body_region": [' in result.output and '"Body_Region"' not in result.output
    refused = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--filter", "Bodyregion=wrist",
                                               "--encoder", VERSION, "--workspace", str(workspace.root)])
    assert refused.exit_code != 0 and "valid: body_region, finding" in refused.output
