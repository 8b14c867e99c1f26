"""Walk 22e: `radloop evaluate` options that were silently ignored, and what `train --help` says about a rerun."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


def _run(*arguments: str, catalog):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [*arguments, "--workspace", str(catalog.workspace.root)],
                              env={"COLUMNS": "400", "RADLOOP_DATABASE_URL": catalog.workspace.database_url})


@pytest.mark.parametrize(("arguments", "message"), [
    (["--coco", "held_out.json", "--split", "val"],
     "error: --split val and --coco held_out.json each choose the images to evaluate on: give one of them"),
    (["--images", "scans"], "error: --images scans is the image folder of a --coco file: give --coco FILE too"),
])
def test_evaluate_refuses_options_it_would_ignore(catalog, arguments, message):
    """--coco with --split evaluated the COCO file and dropped --split; --images without --coco was dropped too."""
    result = _run("evaluate", "--model", "clf-x", *arguments, catalog=catalog)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_train_help_says_what_a_rerun_and_a_second_process_do():
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["train", "--help"], env={"COLUMNS": "400"})
    text = " ".join(result.output.split())
    assert "<workspace>/models/runs/<version>/checkpoints/" in text
    assert "the same command resumes there" in text
    assert "stops at once naming the first one's pid (exit code 3)" in text
    assert "a version registered already is refused before training (unless --no-register)" in text
