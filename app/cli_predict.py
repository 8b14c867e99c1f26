"""`radloop predict`: a registered model's predictions for new image files (also the current-model lookup that
`radloop bench predict` shares)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import (
    JsonOption, WorkspaceOption, check_output_file, console, emit, fail, note_large_images, open_catalog,
)

__all__ = ["predict"]


def predict(
    paths: Annotated[list[Path], typer.Argument(help=(
        "PNG/JPEG/DICOM files or folders (walked recursively; DICOM recognised by content, whatever its name)."),
        metavar="FILE_OR_FOLDER", show_default=False)],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Registered model version (default: the current model of --task).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help=(
        "Registry task whose current model predicts: findings (image-level choices: probes, fine-tuned "
        "classifiers, round probes), detection (boxes), or a job's own `task`. Default: findings, or the one "
        "task with a current model when the workspace has no findings model (e.g. only a detector)."),
        show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write one JSON line per file here (failed files as {file, error}).")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict new image files with a registered model: finding probabilities, body region, boxes (original pixels).

    Each file is read as `radloop ingest` renders it, so the model sees what it sees in the catalog. A file that
    cannot be read gets a one-line error and the others are still predicted; the exit code is then 1. With
    --json the predictions are printed on stdout (only the counts when --out is given).
    """
    from radloop.core.registry import RegistryError
    from radloop.ssl.predict import FilePrediction, predictor_for_version

    if out is not None:
        check_output_file(out)
        if not out.absolute().parent.is_dir():
            fail(f"--out {out}: folder {out.absolute().parent} does not exist")
    catalog = open_catalog(workspace)
    if model is None:
        model = _current_head(catalog, task).version
    files, failed = _image_files(paths)
    if not files and not failed:
        fail(f"no image files in {', '.join(str(p) for p in paths)}")
    from radloop.app.cli_train import _quiet_lightning

    _quiet_lightning()
    note_large_images(files)
    predictor = None
    if files:
        try:
            predictor = predictor_for_version(catalog, model)
        except (RegistryError, ValueError, FileNotFoundError) as error:
            fail(str(error))
    for path, reason in failed:
        console.print(f"error: {path}: {reason}", markup=False, highlight=False, soft_wrap=True)
    results = [FilePrediction(str(path), error=reason) for path, reason in failed]
    if predictor is not None:
        try:
            results += _predict_with_progress(predictor, files)
        except KeyboardInterrupt:
            fail("predict interrupted: nothing written", code=130)
    if out is not None:
        with out.open("w") as handle:
            handle.writelines(json.dumps(result.to_json()) + "\n" for result in results)
    errors = [result for result in results if result.error]
    summary = {"model": model, "files": len(results), "predicted": len(results) - len(errors), "failed": len(errors)}
    if out is not None:
        summary["out"] = str(out)
    if as_json:
        emit(summary if out is not None else {**summary, "predictions": [r.to_json() for r in results]}, True)
    else:
        _show_predictions([result for result in results if not result.error], summary)
    if errors:
        fail(f"{len(errors)} of {len(results)} files could not be predicted (first: {errors[0].path}: "
             f"{errors[0].error})", code=1)


def _current_head(catalog, task: str | None):
    """The current model of ``task``; without a task, of ``findings``, else of the workspace's one task with a
    current head (e.g. only a detector).  Fails naming the tasks that have models."""
    from radloop.core.registry import current_model, list_models

    record = current_model(catalog, task or "findings")
    if record is None and task is None:  # no findings model: the workspace's only task with a current head
        heads = {r.task: r for r in list_models(catalog) if r.is_current and r.task != "encoder"}
        record = next(iter(heads.values())) if len(heads) == 1 else None
    if record is None:
        tasks = sorted({r.task for r in list_models(catalog)} - {"encoder"})
        known = f" (tasks with models: {', '.join(tasks)}; pass --task or --model)" if tasks else ""
        fail(f"no model registered for task {task or 'findings'!r}{known}: train one with "
             "`radloop train --config configs/finetune/probe_cpu.yaml`")
    return record


def _image_files(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to predict (named files as given; folders walked as ingest walks them, recursively, through
    links to folders, each real folder once, skipping what ingest skips: hidden files, text/archive suffixes,
    DICOMDIR) and the paths that could not be read, with why."""
    from radloop.core.ingest_sources import IGNORED_SUFFIXES, MEDIA_DIRECTORY, Discovery, folder_files

    skipped = IGNORED_SUFFIXES | {".xml"}
    files: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            files.append(path)
            continue
        if not path.is_dir():
            failed.append((path, "no such file or folder"))
            continue
        found = Discovery()
        files += [file for file in folder_files(path, found) if not file.name.startswith(".")
                  and file.suffix.lower() not in skipped and file.name.upper() != MEDIA_DIRECTORY]
        failed += [(Path(where), reason) for where, _, reason in found.errors]
    return files, failed


def _predict_with_progress(predictor, files: list[Path]) -> list:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from radloop.ssl.predict import predict_files

    bar = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                   disable=len(files) < 2 or not console.is_terminal)
    task = bar.add_task("predict", total=len(files))

    def on_result(result) -> None:
        if result.error:
            console.print(f"error: {result.path}: {result.error}", markup=False, highlight=False, soft_wrap=True)
        bar.advance(task)

    with bar:
        return predict_files(predictor, files, on_result=on_result)


def _show_predictions(results: list, summary: dict) -> None:
    from radloop.app.options import listing_table, show

    rows = []
    for result in results:
        prediction = result.prediction
        findings = ", ".join(f"{name} {p:.3f}" for name, p in prediction.choices.items())
        region = prediction.body_region
        boxes = "; ".join(f"{b.label} {b.score:.2f} at x={b.x:.0f} y={b.y:.0f} w={b.w:.0f} h={b.h:.0f}"
                          for b in prediction.boxes)
        rows.append([result.path, findings,
                     f"{region} {prediction.regions[region]:.2f}" if region else "", boxes])
    if rows:
        show(listing_table(["file", "findings", "region", "boxes (original px)"], rows,
                           title=f"predictions of {summary['model']}"))
    console.print(f"{summary['predicted']} of {summary['files']} files predicted", markup=False, highlight=False)

