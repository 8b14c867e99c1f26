"""Case search with odd inputs (walk 21a): empty filter lists, images without a region in the CLI table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from radloop.retrieval import search_cases
from radloop.retrieval.search import check_filters
from test_retrieval_search import VERSION, _fill
from typer.testing import CliRunner


@pytest.mark.parametrize("key", ["body_region", "finding", "split", "dataset", "modality", "view", "laterality"])
@pytest.mark.parametrize("empty", [[], (), set()])
def test_an_empty_list_as_a_filter_value_is_refused_naming_the_key(key, empty):
    with pytest.raises(ValueError, match=f"filter '{key}' has no value \\(an empty list\\)") as raised:
        check_filters({key: empty})
    assert "leave the key out" in str(raised.value)


def test_search_cases_refuses_an_empty_filter_list_instead_of_returning_no_hits(catalog):
    ids, _ = _fill(catalog, count=12)
    with pytest.raises(ValueError, match="filter 'body_region' has no value.*body_region=unknown"):
        search_cases(catalog, case_id=ids[0], k=3, filters={"body_region": []}, encoder=VERSION)
    # leaving the key out is "no constraint"; a list with values still means "any of"
    assert len(search_cases(catalog, case_id=ids[0], k=3, filters={}, encoder=VERSION)) == 3
    hits = search_cases(catalog, case_id=ids[0], k=20, filters={"body_region": ["elbow", "elbow"]}, encoder=VERSION)
    assert hits and {hit.body_region for hit in hits} == {"elbow"}


def test_the_cli_table_says_unknown_for_an_image_without_a_region(catalog, workspace):
    from radloop.app.cli import build_app
    from radloop.core.schema import Image

    ids, _ = _fill(catalog, count=12)
    with catalog.session() as session:
        for image_id in ids[1:]:
            session.get(Image, image_id).body_region = None
    result = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--k", "3", "--encoder", VERSION,
                                              "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│") and "I-" in line]
    assert len(rows) == 3 and all("unknown" in row for row in rows), result.output


def test_a_k_larger_than_the_index_returns_every_other_case_without_allocating_k(catalog, workspace):
    from radloop.app.cli import build_app

    ids, _ = _fill(catalog, count=12)
    hits = search_cases(catalog, case_id=ids[0], k=10**11, encoder=VERSION)  # was a 373 GiB MemoryError
    assert len(hits) == 11 and ids[0] not in {hit.image_id for hit in hits}
    result = CliRunner().invoke(build_app(), ["search", "--case", ids[0], "--k", "99999999999", "--encoder", VERSION,
                                              "--json", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["neighbours"]) == 11


def test_index_search_clamps_k_to_its_entries_and_refuses_a_k_that_is_no_integer():
    from radloop.retrieval import IndexManager

    vectors = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    manager = IndexManager.build(vectors, [f"I-{i}" for i in range(5)], "v")
    found = manager.search(vectors[0], 10**12)
    assert len(found.ids[0]) == 5 and found.distances.shape == (1, 5)
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            manager.search(vectors[0], bad)


@pytest.mark.parametrize("bad", [0, -2, 2.5, "3", True])
def test_search_cases_refuses_a_k_that_is_no_positive_integer(catalog, bad):
    ids, _ = _fill(catalog, count=6)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        search_cases(catalog, case_id=ids[0], k=bad, encoder=VERSION)


def test_a_repeated_filter_value_is_one_value_and_a_comma_list_gets_a_hint(catalog, workspace):
    from radloop.app.cli import build_app

    ids, _ = _fill(catalog, count=12)
    args = ["search", "--case", ids[0], "--k", "2", "--encoder", VERSION, "--workspace", str(workspace.root)]
    result = CliRunner().invoke(build_app(), [*args, "--filter", "body_region=wrist", "--filter",
                                              "body_region=wrist", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["filters"] == {"body_region": ["wrist"]}
    comma = CliRunner().invoke(build_app(), [*args, "--filter", "body_region=wrist,elbow"])
    assert comma.exit_code != 0
    assert "repeat --filter body_region=VALUE" in " ".join(comma.output.split()), comma.output


def test_query_files_that_are_empty_missing_or_relative_are_named_plainly(catalog, tmp_path, monkeypatch):
    _fill(catalog, count=6)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read the query image .*empty\.png: the file is empty \(0 bytes\)"):
        search_cases(catalog, image=empty, k=1, encoder=VERSION)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as raised:
        search_cases(catalog, image="scan.png", k=1, encoder=VERSION)
    assert str(raised.value) == f"query image not found: scan.png (looked for {tmp_path / 'scan.png'})"


def test_a_file_that_is_not_an_image_is_named_without_the_decoders_class_name(catalog, tmp_path):
    from radloop.core.embeddings import write_shard
    from test_retrieval_search import register_random_resnet

    ids, _ = _fill(catalog, count=4)
    register_random_resnet(catalog, "enc-rand")
    write_shard(catalog, "enc-rand", ids, np.random.default_rng(0).normal(size=(4, 512)).astype(np.float32),
                normalized=False)
    text = tmp_path / "notes.png"
    text.write_text("these are notes")
    with pytest.raises(ValueError) as raised:
        search_cases(catalog, image=text, k=1, encoder="enc-rand")
    assert str(raised.value) == (f"cannot read the query image {text}: unrecognised content, not an image "
                                 "(PNG, JPEG or DICOM)")


@pytest.mark.parametrize("filters", [["body_region=wrist"], "body_region=wrist", ("body_region", "wrist")])
def test_filters_that_are_not_a_dict_are_a_value_error_not_an_attribute_error(catalog, filters):
    ids, _ = _fill(catalog, count=4)
    with pytest.raises(ValueError, match="filters must be a dict key -> value"):
        search_cases(catalog, case_id=ids[0], k=1, filters=filters, encoder=VERSION)


def test_unknown_for_a_key_that_is_never_empty_says_where_unknown_applies(catalog):
    ids, _ = _fill(catalog, count=4)
    with pytest.raises(ValueError, match=r"unknown finding 'unknown'; valid: .*\(unknown, or None, applies to "
                                         r"body_region, modality, view, laterality only\)"):
        search_cases(catalog, case_id=ids[0], k=1, filters={"finding": None}, encoder=VERSION)


@pytest.mark.parametrize("image, problem", [
    (np.zeros((0, 0), np.uint8), "it has no pixels"),
    (np.full((8, 8), np.nan, np.float32), "64 pixel(s) are NaN or infinite"),
])
def test_a_query_array_without_usable_pixels_is_named_by_its_shape(catalog, image, problem):
    _fill(catalog, count=4)
    with pytest.raises(ValueError) as raised:
        search_cases(catalog, image=image, k=1, encoder=VERSION)
    assert str(raised.value) == (f"cannot read the query image (an array of shape {image.shape}, dtype "
                                 f"{image.dtype}): {problem}")


def test_query_bytes_are_refused_with_what_to_pass_instead(catalog):
    _fill(catalog, count=4)
    with pytest.raises(ValueError, match=r"image must be a file path or a 2-D array, got bytes \(file bytes: decode"):
        search_cases(catalog, image=b"\x89PNG", k=1, encoder=VERSION)


def _add_unembedded_image(catalog, render: str) -> str:
    from radloop.core.schema import Image

    with catalog.session() as session:
        session.add(Image(id="I-new", study_id="S-0000000000000001", content_hash="n" * 64, dataset="synthetic",
                          source_path="/nowhere/new.png", source_format="png", render_path=render,
                          thumb_path="thumbs/new.png", width=64, height=64, render_width=64, render_height=64))
    return "I-new"


def test_a_case_not_embedded_whose_render_is_missing_says_so(catalog):
    _fill(catalog, count=4)
    case = _add_unembedded_image(catalog, "renders/gone.png")
    with pytest.raises(FileNotFoundError) as raised:
        search_cases(catalog, case_id=case, k=1, encoder=VERSION)
    message = str(raised.value)
    assert message.startswith(f"case I-new is not embedded with {VERSION} and its render ") and "Errno" not in message
    assert str(catalog.workspace.absolute("renders/gone.png")) in message and message.endswith("embedded now either")


def test_a_query_that_needs_embedding_with_an_encoder_not_at_hand_says_why(catalog, tmp_path):
    from PIL import Image as PILImage

    _fill(catalog, count=4)  # embeddings of VERSION, whose encoder is not registered in this workspace
    query = tmp_path / "query.png"
    PILImage.fromarray(np.zeros((16, 16), np.uint8)).save(query)
    with pytest.raises(LookupError, match=f"^the query image must be embedded with {VERSION}, and that encoder is "
                                          "not at hand to embed it \\(encoder .* is neither a folder"):
        search_cases(catalog, image=query, k=1, encoder=VERSION)


def test_a_case_id_with_surrounding_blanks_is_found(catalog, workspace):
    from radloop.app.cli import build_app

    ids, _ = _fill(catalog, count=6)
    hits = search_cases(catalog, case_id=f" {ids[0]}\n", k=2, encoder=VERSION)
    assert len(hits) == 2 and ids[0] not in {hit.image_id for hit in hits}
    result = CliRunner().invoke(build_app(), ["search", "--case", f"{ids[0]} ", "--k", "2", "--encoder", VERSION,
                                              "--json", "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
