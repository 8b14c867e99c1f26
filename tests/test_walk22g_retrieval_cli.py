"""A newcomer's walk through `radloop search` / `radloop index`: long work is announced before it starts, and a
hint names a command that works."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from radloop.core.embeddings import write_shard
from test_retrieval_search import VERSION, _fill, add_study_image


def _invoke(arguments: list[str]):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), arguments)


def _flat(result) -> str:
    return " ".join(result.output.replace("│", " ").split())  # the console may wrap a long line, in a help box too


def test_search_says_when_it_builds_or_extends_the_index(catalog, workspace):
    """The first `radloop search` of an encoder builds its index (about a minute for a million images) and a
    search after `radloop embed` extends it: both used to run without a word, the terminal looking hung."""
    ids, _ = _fill(catalog, count=30)
    search = ["search", "--case", ids[0], "--k", "2", "--encoder", VERSION, "--workspace", str(workspace.root)]
    first = _invoke(search)
    assert first.exit_code == 0, first.output
    assert f"building the case-search index of {VERSION}'s embeddings on first use" in _flat(first)
    again = _invoke(search)
    assert again.exit_code == 0 and "case-search index" not in again.output, again.output
    with catalog.session() as session:
        new_ids = [add_study_image(session, 100 + i, "wrist") for i in range(3)]
    write_shard(catalog, VERSION, new_ids, np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32),
                normalized=False)
    extended = _invoke(search)
    assert extended.exit_code == 0, extended.output
    assert f"adding 3 new embeddings to the case-search index of {VERSION}" in _flat(extended)


def test_an_encoder_folder_without_embeddings_is_told_to_embed_that_folder(catalog, workspace, tmp_path):
    """`--encoder FOLDER` (as `radloop embed` takes it) for an encoder not embedded here used to answer "run
    `radloop embed --encoder enc-...` first", naming a version that `embed` refuses (it is not registered)."""
    from radloop.ssl import random_encoder, save_encoder

    _fill(catalog, count=12)
    bundle = random_encoder("resnet18", 32)
    folder = tmp_path / "new-encoder"
    saved = save_encoder(getattr(bundle.model, "backbone", bundle.model), folder, timm_name="resnet18", image_size=32,
                         method="random")
    for arguments in (["search", "--case", "I-0000000000000000"], ["index", "build"], ["index", "info"]):
        result = _invoke(arguments + ["--encoder", str(folder), "--workspace", str(workspace.root)])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert (f"encoder {folder} ({saved.version}) has no embeddings in this workspace: run "
                f"`radloop embed --encoder {folder}` first") in _flat(result), result.output


def test_one_hit_is_one_neighbour(catalog, workspace):
    """`radloop search --k 1` titled its table "1 neighbours of ..."."""
    ids, _ = _fill(catalog, count=12)
    result = _invoke(["search", "--case", ids[0], "--k", "1", "--encoder", VERSION, "--workspace",
                      str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert f"1 neighbour of {ids[0]}" in _flat(result) and "1 neighbours" not in result.output


def test_encoder_help_says_a_folder_is_taken_too():
    """`--encoder` of search / index build / index info takes an encoder folder as `radloop embed` does; the help
    said "Encoder version" only."""
    for command in (["search"], ["index", "build"], ["index", "info"]):
        result = _invoke(command + ["--help"])
        assert result.exit_code == 0 and "encoder folder" in _flat(result), result.output


def test_bench_selection_skips_the_reference_without_kcenter():
    """`radloop bench selection --strategies badge` timed the NumPy k-center reference anyway (249 s at 1M, the
    longest part of the run) although only `kcenter` is compared with it: now skipped, and said so."""
    from radloop.retrieval.scale_bench import bench_selection, clustered_vectors

    vectors = clustered_vectors(400, 8, n_clusters=10)
    told: list[str] = []
    result = bench_selection(vectors, 10, strategies=("random", "margin"), progress=told.append)
    assert "reference_kcenter_s" not in result and "kcenter" in result["reference_skipped"]
    assert any("reference: skipped" in line for line in told), told
    compared = bench_selection(vectors, 10, strategies=("kcenter",))
    assert compared["kcenter_same_picks"] == 1.0 and "reference_skipped" not in compared


def test_an_unknown_strategy_parameter_names_the_valid_ones():
    """`round start --set 'strategy_params={candidate_facter: 3}'` answered with Python's "ClusterMarginSelection.
    __init__() got an unexpected keyword argument": a class the user never named, and no list of what is valid."""
    import pytest

    from radloop.retrieval import get_strategy

    with pytest.raises(ValueError) as caught:
        get_strategy("cluster_margin", candidate_facter=3)
    message = str(caught.value)
    assert "__init__" not in message and "(did you mean 'candidate_factor'?)" in message, message
    assert message.endswith("valid: candidate_factor, cold_start, uncertainty"), message
    with pytest.raises(ValueError, match="unknown parameter 'budget'; valid: none"):
        get_strategy("margin", budget=3)


def test_index_info_says_when_embeddings_are_missing_from_the_saved_index(catalog, workspace):
    """`radloop index info` after `radloop embed` printed the saved counts only, as if the index held every
    embedded image."""
    _fill(catalog, count=12)
    info = ["index", "info", "--encoder", VERSION, "--workspace", str(workspace.root)]
    assert _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(workspace.root)]).exit_code == 0
    current = _invoke(info)
    assert current.exit_code == 0 and "note:" not in current.output, current.output
    with catalog.session() as session:
        new_ids = [add_study_image(session, 200 + i, "elbow") for i in range(2)]
    write_shard(catalog, VERSION, new_ids, np.ones((2, 16), dtype=np.float32), normalized=False)
    stale = _invoke(info)
    assert stale.exit_code == 0, stale.output
    assert f"note: 2 images embedded with {VERSION} since this index was saved are not in it yet" in _flat(stale)


def test_root_help_says_what_the_ls_group_is_for():
    """`radloop --help` described `ls` as "Label Studio projects.": read by a newcomer as a file listing."""
    result = _invoke(["--help"])
    assert result.exit_code == 0 and "Label Studio: create the workspace's project" in _flat(result), result.output


def test_index_build_tells_each_long_stage(catalog, workspace):
    """`radloop index build` / `bench retrieval` printed one line, then nothing for the minute a million vectors
    take to read, train, add and calibrate."""
    from radloop.retrieval import IndexConfig, IndexManager
    from radloop.retrieval.scale_bench import clustered_vectors

    told: list[str] = []
    vectors = clustered_vectors(3000, 16, n_clusters=20)
    IndexManager.build(vectors, [str(i) for i in range(3000)], "v", IndexConfig(factory="IVF64,SQ8"),
                       progress=told.append)
    assert told == ["training IVF64,SQ8 on 3,000 vectors", "adding 3,000 vectors to the IVF64,SQ8 index",
                    "calibrating nprobe to recall@10 >= 0.98 on sampled vectors"], told
    _fill(catalog, count=20)
    result = _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert f"reading 20 embeddings of {VERSION}" in _flat(result) and "adding 20 vectors" in _flat(result)


def test_search_says_when_it_embeds_the_query_image(catalog, tmp_path):
    """`radloop search --image NEW.png` loads the encoder and embeds the file (seconds, torch's start-up
    included) without a word; a catalogued query is not embedded again and says nothing."""
    from PIL import Image as PILImage

    from radloop.retrieval import search_cases
    from search_pair import two_embedded_images

    pixels = two_embedded_images(catalog, "enc-say")
    query = tmp_path / "new.png"
    PILImage.fromarray(pixels[1]).save(query)
    told: list[str] = []
    assert search_cases(catalog, image=query, k=1, progress=told.append)[0].image_id == "I-1"
    assert "embedding the query image with enc-say" in told, told
    told.clear()
    search_cases(catalog, case_id="I-0", k=1, progress=told.append)
    assert not any("embedding" in line for line in told), told
