"""The CLI as scripts use it (cron, pipes, CI logs): listings on stdout, no progress bars into log files, no
crash printing non-ASCII text on an ASCII stream, no traceback when a pipe closes early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

RADLOOP = Path(sys.executable).with_name("radloop")


def _cli(catalog, *args: str):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [*args, "--workspace", str(catalog.workspace.root)])


def _add_round(catalog, note: str) -> None:
    from radloop.core.schema import Round

    with catalog.session() as session:
        session.add(Round(number=1, state="finished", strategy="random", budget=4, task="fracture",
                          model_version="enc-x", labels_spent=4, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                          meta={"notes": [note]}))
        session.commit()


def test_round_status_lists_rounds_on_stdout_and_notes_on_stderr(catalog):
    """`radloop round status | grep finished` found nothing: the table went to stderr (unlike `models list`)."""
    _add_round(catalog, "a note for the log")
    result = _cli(catalog, "round", "status")
    assert result.exit_code == 0, result.output
    assert "finished" in result.stdout and "random" in result.stdout, result.stderr
    assert "a note for the log" in result.stderr and "a note for the log" not in result.stdout


def _capture(monkeypatch, module: str, name: str, seen: dict, key: str):
    """Replace ``module.name`` by a stub that records its ``progress`` argument and stops the command."""
    import importlib

    def stub(*args, **kwargs):
        seen[key] = kwargs["progress"]
        raise ValueError("stopped by the test")

    monkeypatch.setattr(importlib.import_module(module), name, stub)


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bars_only_when_stderr_is_a_terminal(catalog, monkeypatch, terminal):
    """Into a log file (cron, CI) every bar update was a carriage return: one line thousands of updates long."""
    import radloop.app.options as options

    monkeypatch.setattr(options, "_is_terminal", lambda stream: terminal)
    seen: dict = {}
    _capture(monkeypatch, "radloop.ssl.finetune_jobs", "run_training", seen, "train")
    result = _cli(catalog, "train", "--config", "configs/finetune/probe_cpu.yaml")
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    _capture(monkeypatch, "radloop.ssl.finetune_evaluate", "evaluate_model", seen, "evaluate")
    assert _cli(catalog, "evaluate", "--model", "probe-x").exit_code == 2
    _capture(monkeypatch, "radloop.ssl.finetune_bench", "run_bench", seen, "bench finetune")
    assert _cli(catalog, "bench", "finetune").exit_code == 2

    def pretrain(catalog, settings, run_dir, resume):
        seen["pretrain"] = settings.trainer.enable_progress_bar
        raise ValueError("stopped by the test")

    monkeypatch.setattr("radloop.ssl.pretrain.pretrain", pretrain)
    assert _cli(catalog, "pretrain", "--config", "configs/ssl/simclr_cpu.yaml").exit_code == 2

    def embed_catalog(catalog, bundle, **kwargs):
        seen["embed"] = kwargs["progress"]
        raise ValueError("stopped by the test")

    monkeypatch.setattr("radloop.ssl.embed.resolve_encoder", lambda catalog, encoder: object())
    monkeypatch.setattr("radloop.ssl.embed.embed_catalog", embed_catalog)
    monkeypatch.setattr("radloop.app.cli_ssl._nothing_to_embed", lambda *args, **kwargs: None)
    assert _cli(catalog, "embed", "--encoder", "enc-x", "--accelerator", "cpu").exit_code == 2
    assert seen == dict.fromkeys(("train", "evaluate", "bench finetune", "pretrain", "embed"), terminal)
    if not terminal:  # asked for in so many words: a bar into the log too
        _cli(catalog, "pretrain", "--config", "configs/ssl/simclr_cpu.yaml", "--set", "trainer.enable_progress_bar=true")
        assert seen["pretrain"] is True


def test_non_ascii_text_prints_on_an_ascii_stream(tmp_path):
    """With LC_ALL=C and UTF-8 mode off, `radloop info` on a catalog with a dataset named with an accent (datasets
    are named after folders) ended in a UnicodeEncodeError traceback; now it prints the name escaped, and a path
    given on the command line keeps its own bytes."""
    from radloop.core.catalog import Catalog
    from radloop.core.schema import Report, Study
    from radloop.core.workspace import resolve_workspace

    root = tmp_path / "röntgen-ü"
    catalog = Catalog.open(resolve_workspace(root).ensure())
    with catalog.session() as session:
        session.add(Study(id="S-1", dataset="klinikum-süd", body_region="chest", modality="CR", split="train"))
        session.flush()
        session.add(Report(id="R-1", study_id="S-1", content_hash="0" * 16, dataset="klinikum-süd", text="Ödem."))
        session.commit()
    catalog.dispose()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LC_ALL": "C", "PYTHONUTF8": "0"}
    runs = {}
    for args in (("info",), ("info", "--json")):
        done = runs[args] = subprocess.run([str(RADLOOP), *args, "--workspace", str(root)], env=env,
                                           capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        assert b"Traceback" not in done.stderr and b"UnicodeEncodeError" not in done.stderr
    assert b"klinikum-s\\xfcd" in runs["info",].stdout
    assert os.fsencode(root) in runs["info",].stdout  # the folder's own bytes (a UTF-8 terminal shows them right)
    shown = json.loads(runs["info", "--json"].stdout)
    assert shown["reports_by_dataset"] == {"klinikum-süd": 1} and os.fsencode(shown["workspace"]) == os.fsencode(root)


def test_a_pipe_closed_early_ends_quietly(catalog):
    """`radloop info | head -1`: no BrokenPipeError traceback when the reader has gone (exit code 1)."""
    root = str(catalog.workspace.root)
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line is written
    try:
        done = subprocess.run([str(RADLOOP), "info", "--workspace", root], stdout=writer, stderr=subprocess.PIPE,
                              timeout=120, check=False, env={**os.environ, "PYTHONUNBUFFERED": ""})
    finally:
        os.close(writer)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr.decode()


def test_label_reports_to_stdout_keeps_its_summary_one_json_line(tmp_path):
    """With the labels on stdout the summary goes to stderr: it was wrapped at 80 columns (a file name with spaces
    or brackets broken, or eaten as markup), so `2> summary.json` did not parse."""
    source = tmp_path / "ward [a] reports from the night shift of the emergency department.csv"
    source.write_text("report_id,text\nA,No pneumothorax.\nB,Small left pleural effusion.\n")
    from radloop.app.cli import build_app

    result = CliRunner().invoke(build_app(), ["label-reports", str(source)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["report_id"] for line in result.stdout.splitlines()] == ["A", "B"]
    [line] = result.stderr.splitlines()
    assert json.loads(line)["input"] == str(source) and json.loads(line)["reports"] == 2


def test_file_names_with_brackets_print_as_they_are(tmp_path, capsys):
    """A folder named like rich markup ("a[/b]") ended `radloop ingest` and `radloop info` in a MarkupError
    traceback (rich read the path as a closing tag); a name like "[left wrist]" lost its brackets."""
    folder = tmp_path / "x-ray [left wrist]" / "a[/b]"
    folder.mkdir(parents=True)
    (folder / "bad.dcm").write_text("ward round notes, not an image\n")
    root = str(tmp_path / "ws")
    from radloop.app.cli import build_app

    ingested = CliRunner().invoke(build_app(), ["ingest", str(tmp_path / "x-ray [left wrist]"), "--workspace", root])
    assert ingested.exit_code == 1 and isinstance(ingested.exception, SystemExit), repr(ingested.exception)
    flat = "".join(ingested.stderr.split())
    assert "x-ray[leftwrist]/a[/b]/bad.dcm" in flat, ingested.stderr
    info = CliRunner().invoke(build_app(), ["info", "--workspace", root])
    assert info.exit_code == 0, info.output
    assert "x-ray[leftwrist]/a[/b]/bad.dcm" in "".join(info.stderr.split())
    from radloop.app.options import emit, listing_table, show

    capsys.readouterr()
    emit({"folder": "scans [/b] [bold]"}, False, title="[/i] title")
    show(listing_table(["file"], [["c[/b].png"]], title="of [/x]"))
    printed = capsys.readouterr().out
    assert all(text in printed for text in ("scans [/b] [bold]", "[/i] title", "c[/b].png", "of [/x]")), printed


def test_json_output_is_strict_json(capsys):
    """`--json` printed Python's NaN (a metric on one class; jq: "Invalid numeric literal") and NumPy float32
    values as quoted strings."""
    import numpy as np

    from radloop.app.options import emit

    emit({"auroc": float("nan"), "ece": np.float32(0.25), "curve": [np.float64("inf"), 1, "a"],
          "per_finding": {"fracture": {"ap": np.float32("nan"), "n": np.int64(3)}}}, True)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed == {"auroc": None, "ece": 0.25, "curve": [None, 1, "a"],
                       "per_finding": {"fracture": {"ap": None, "n": 3}}}


def test_eval_reports_prints_a_disagreements_file_name_as_it_is(capsys):
    """`eval-reports --disagreements "night [/b].tsv"` ended in a MarkupError after scoring every report."""
    from radloop.app.cli_labeling import _print_scores

    _print_scores({"reports": 2, "per_finding": {"effusion": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "tp": 1,
                                                              "fp": 0, "fn": 1}},
                   "micro_f1": 0.667, "disagreements": 1, "disagreements_file": "night [/b].tsv"})
    assert "disagreements_file night [/b].tsv" in capsys.readouterr().out


def test_embed_keeps_lightnings_deprecation_note_out_of_logs(catalog, monkeypatch):
    """`radloop embed 2> log` wrote Lightning's "`isinstance(treespec, LeafSpec)` is deprecated" into every log
    (pretrain and train already silenced it)."""
    import warnings

    def embed_catalog(catalog, bundle, **kwargs):
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
                      DeprecationWarning)
        raise ValueError("stopped by the test")

    monkeypatch.setattr("radloop.ssl.embed.resolve_encoder", lambda catalog, encoder: object())
    monkeypatch.setattr("radloop.ssl.embed.embed_catalog", embed_catalog)
    monkeypatch.setattr("radloop.app.cli_ssl._nothing_to_embed", lambda *args, **kwargs: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cli(catalog, "embed", "--encoder", "enc-x", "--accelerator", "cpu").exit_code == 2
    assert not [str(warning.message) for warning in caught if "LeafSpec" in str(warning.message)]
