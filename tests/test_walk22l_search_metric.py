"""`radloop search` says which distance it shows (walk 22l): an index built with ``--set metric=l2`` showed L2
distances in a column the docs call 1 - cosine, and a later `radloop round start` rebuilding it with cosine
changed the distances without a word."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from radloop.core.embeddings import write_shard
from test_retrieval_search import VERSION, _fill, add_study_image


def _invoke(arguments: list[str]):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), arguments)


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def _json(result) -> dict:
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_the_output_names_the_distance_of_an_l2_index(catalog, workspace):
    ids, _ = _fill(catalog, count=20)
    root = ["--encoder", VERSION, "--workspace", str(workspace.root)]
    built = _invoke(["index", "build", "--set", "metric=l2", *root])
    assert built.exit_code == 0, built.output
    found = _json(_invoke(["search", "--case", ids[0], "--k", "3", "--json", *root]))
    assert found["metric"] == "l2" and found["distance"] == "Euclidean (L2) distance"
    assert {hit["metric"] for hit in found["neighbours"]} == {"l2"} and "metric_change" not in found
    table = _invoke(["search", "--case", ids[0], "--k", "3", *root])
    assert table.exit_code == 0, table.output
    assert "distance (L2)" in _flat(table.output) and "distance (1 - cosine)" not in _flat(table.output)


def test_a_round_start_rebuild_keeps_the_metric_the_index_was_built_with(catalog, workspace):
    """`round start` rebuilt an index with new embeddings from the defaults, so an l2 index became cosine at
    every round (lead, after walk 22l's report); it now rebuilds with the saved index's settings."""
    from radloop.app.rounds import _refresh_index
    from radloop.retrieval.index import index_folder

    ids, _ = _fill(catalog, count=20)
    root = ["--encoder", VERSION, "--workspace", str(workspace.root)]
    assert _invoke(["index", "build", "--set", "metric=l2", *root]).exit_code == 0
    with catalog.session() as session:
        new = [add_study_image(session, 200 + i, "wrist") for i in range(2)]
    write_shard(catalog, VERSION, new, np.random.default_rng(2).normal(size=(2, 16)).astype(np.float32),
                normalized=False)
    assert _refresh_index(catalog, VERSION, lambda _message, _fraction: None)  # what `round start` does
    manifest = json.loads((index_folder(workspace, VERSION) / "manifest.json").read_text())
    assert manifest["count"] == 22 and manifest["metric"] == "l2"  # rebuilt with the new embeddings, still l2
    search = ["search", "--case", ids[0], "--k", "3", *root]
    found = _json(_invoke(search + ["--json"]))
    assert found["metric"] == "l2" and "metric_change" not in found, found


def test_a_rebuild_with_another_metric_is_told_until_an_explicit_index_build(catalog, workspace):
    """A saved index whose settings no longer validate (another radloop version's) is rebuilt with the defaults
    by `round start`: the search output says the metric changed, until an explicit `radloop index build`."""
    from radloop.app.rounds import _refresh_index
    from radloop.retrieval.index import index_folder

    ids, _ = _fill(catalog, count=20)
    root = ["--encoder", VERSION, "--workspace", str(workspace.root)]
    assert _invoke(["index", "build", "--set", "metric=l2", *root]).exit_code == 0
    manifest_path = index_folder(workspace, VERSION) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["no_such_setting"] = 1
    manifest_path.write_text(json.dumps(manifest))
    assert _refresh_index(catalog, VERSION, lambda _message, _fraction: None)
    search = ["search", "--case", ids[0], "--k", "3", *root]
    result = _invoke(search + ["--json"])
    assert result.exit_code == 0, result.output
    found = _json(result)
    assert found["metric"] == "cosine" and found["distance"] == "1 - cosine similarity"
    assert found["metric_change"]["from"] == "l2" and found["metric_change"]["to"] == "cosine"
    assert (f"the case-search index of {VERSION} was rebuilt with cosine distance on "
            in _flat(result.stderr)), result.stderr
    assert "--set metric=l2` builds it with l2 again" in _flat(result.stderr)
    table = _invoke(search)
    assert table.exit_code == 0 and "rebuilt with cosine distance" in _flat(table.output), table.output
    assert "distance (1 - cosine)" in _flat(table.output)
    # an explicit build (the metric asked for) ends the note
    assert _invoke(["index", "build", *root]).exit_code == 0
    quiet = _invoke(search + ["--json"])
    assert "rebuilt" not in quiet.output and "metric_change" not in _json(quiet)
