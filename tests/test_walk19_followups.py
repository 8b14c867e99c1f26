"""Left-overs of the retrieval walkthrough: a folder given as the query image is named as a folder,
`radloop index build` says what it is doing before minutes of work, and `bench active-learning` says when
its budget covers a task's whole pool (random's final score is then the full pool's)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from radloop.retrieval import search_cases
from radloop.retrieval.al_bench import run_benchmark
from radloop.retrieval.al_tasks import TaskData
from test_retrieval_search import VERSION, _fill


def _invoke(arguments: list[str]):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), arguments)


def test_a_folder_as_query_image_is_named_a_folder(catalog, tmp_path):
    _fill(catalog)
    with pytest.raises(FileNotFoundError, match="is a folder, not an image file"):
        search_cases(catalog, image=tmp_path, k=3)
    result = _invoke(["search", "--image", str(tmp_path), "--workspace", str(catalog.workspace.root)])
    assert result.exit_code == 2 and "is a folder, not an image file" in " ".join(result.output.split())


def test_index_build_says_what_it_builds_before_the_work(catalog):
    _fill(catalog)
    result = _invoke(["index", "build", "--encoder", VERSION, "--workspace", str(catalog.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert f"building the case-search index of {VERSION}'s embeddings" in " ".join(result.stderr.split())


def test_bench_active_learning_notes_a_budget_that_covers_the_pool():
    rng = np.random.default_rng(0)
    pool_y, eval_y = np.tile([0, 1], 30), np.tile([0, 1], 40)
    pool_x = rng.normal(size=(60, 8)).astype(np.float32) + pool_y[:, None]
    eval_x = rng.normal(size=(80, 8)).astype(np.float32) + eval_y[:, None]
    task = TaskData("fracture", "auroc", ["absent", "present"], pool_x, pool_y, eval_x, eval_y)
    said: list[str] = []
    covered = run_benchmark([task], ["random"], budget=60, step=20, seeds=1, progress=said.append)
    assert "covers the whole pool (60 images)" in covered["tasks"]["fracture"]["note"]
    assert any("note: the budget (60) covers the whole pool" in line for line in said)
    assert "note" not in run_benchmark([task], ["random"], budget=40, step=20, seeds=1)["tasks"]["fracture"]
