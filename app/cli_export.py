"""`radloop export`: the labelled catalog as a training dataset for use elsewhere
(:func:`radloop.core.dataset_export.export_dataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import JsonOption, WorkspaceOption, console, emit, fail, open_catalog, progress_bars


def register(groups) -> None:
    """Attach the export command to the CLI groups."""
    groups.root.command("export")(export_command)


def export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help=(
        "Folder to write (new or empty; --overwrite replaces a non-empty one): labels.csv, boxes.coco.json, "
        "export.json (and weak_labels.jsonl with --with-evidence)."))],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Only this dataset's images.")] = None,
    splits: Annotated[Optional[list[str]], typer.Option(
        "--split", help="train, val or test (repeatable; default: every split).")] = None,
    filters: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="key=value, repeatable, as `radloop search --filter` reads them (same key: any of; keys: "
                         "body_region, finding, split, dataset, modality, view, laterality; body_region=unknown: "
                         "images without a region).")] = None,
    labels: Annotated[str, typer.Option(
        "--labels", metavar="expert|weak|both", help=(
            "Expert labels and boxes (as `radloop train` resolves them), report weak labels (a status per finding, "
            "no text), or both."))] = "both",
    with_evidence: Annotated[bool, typer.Option("--with-evidence", help=(
        "Also write weak_labels.jsonl: each study's weak-label mentions with their evidence sentence redacted "
        "(rule-based scrubbing, not a certified de-identification)."))] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the labelled images as a dataset: one CSV row per image, COCO expert boxes, provenance.

    Paths in the files are absolute (renders in the workspace, original source files). No report text is
    written unless --with-evidence. The folder is written under a temporary name and renamed when complete.
    """
    from radloop.core.dataset_export import LABEL_MODES, ExportError, export_dataset

    if labels not in LABEL_MODES:
        fail(f"--labels {labels!r}: one of {', '.join(LABEL_MODES)}")
    if with_evidence and labels == "expert":
        fail("--with-evidence writes the weak labels' evidence: not with --labels expert")
    from radloop.core.splits import SPLITS

    for split in splits or ():
        if split not in SPLITS:
            fail(f"--split {split!r}: one of {', '.join(SPLITS)}")
    from radloop.retrieval.search_filters import allowed_image_ids, parse_filters, resolve_filter_values

    try:
        parsed = parse_filters(filters)
    except ValueError as error:
        fail(str(error))
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give a folder (new or empty)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        fail(f"--out {out} is not empty: give a new or empty folder, or --overwrite to replace it")
    catalog = open_catalog(workspace)
    image_ids = None
    if parsed:
        try:
            image_ids = allowed_image_ids(catalog, resolve_filter_values(catalog, parsed))
        except ValueError as error:
            fail(str(error))
    redact = None
    if with_evidence:
        from radloop.labeling.redact import redact_report

        def redact(text: str) -> str:
            return redact_report(text).text
    try:
        summary = _export_with_progress(
            export_dataset, catalog, out, dataset=dataset, splits=splits, image_ids=image_ids, labels=labels,
            with_evidence=with_evidence, redact=redact, overwrite=overwrite, filters=parsed,
            command=_command_line(out, dataset, splits, filters, labels, with_evidence, overwrite),
            show_bar=not as_json and progress_bars())
    except ExportError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail(f"export interrupted: nothing was written to {out}; run the same command again", code=130)
    if summary.images == 0:
        console.print("note: no image matches this selection: the files hold headers only", markup=False,
                      highlight=False)
    if summary.missing_renders:
        console.print(f"note: {summary.missing_renders:,} exported images have no render file in the workspace "
                      "(`radloop ingest` of their sources again restores them; `radloop train` leaves them out)",
                      markup=False, highlight=False, soft_wrap=True)
    emit(summary.to_json(), as_json, title=f"exported {summary.images:,} images to {summary.out}")


def _command_line(out, dataset, splits, filters, labels, with_evidence, overwrite) -> list[str]:
    """The export's command line as parsed (the workspace left out: a path of this machine), for export.json."""
    words = ["radloop", "export", "--out", str(out)]
    words += ["--dataset", dataset] if dataset else []
    words += [word for split in splits or () for word in ("--split", split)]
    words += [word for item in filters or () for word in ("--filter", item)]
    words += ["--labels", labels] + (["--with-evidence"] if with_evidence else [])
    return words + (["--overwrite"] if overwrite else [])


def _export_with_progress(export, *args, show_bar: bool, **kwargs):
    """Run ``export`` with a progress bar on stderr when it is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                   disable=not show_bar)
    task = bar.add_task("export", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        return export(*args, progress=progress, **kwargs)
