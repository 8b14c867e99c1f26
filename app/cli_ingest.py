"""`radloop ingest`, `radloop info` and `radloop bench ingest`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from radloop.app.options import JsonOption, WorkspaceOption, console, emit, fail, progress_bars
from radloop.core.ingest_sources import UNBOXED_CHOICES


def register(groups) -> None:
    """Attach the ingest commands to the CLI groups."""
    groups.root.command("ingest")(ingest_command)
    groups.root.command("info")(info_command)
    groups.bench.command("ingest")(bench_ingest_command)


def ingest_command(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="DICOM/PNG/JPEG files or folders (recursive), a COCO json (with --images), a YOLO folder "
             "(images/ + labels/ + data.yaml), or report files (Open-i XML .tgz/folder, CSV).")] = None,
    reports: Annotated[Optional[list[Path]], typer.Option(
        "--reports", help="Report file: Open-i XML tarball/folder/file or CSV report_id,text[,study_id,image,report_date] "
                          "(repeatable).")] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="Image folder of a COCO json (default: the json's folder).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", "-j", min=1, help="Decode/render processes (default: CPU cores).")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Dataset name for everything ingested (default: each input path's name).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help="Only the first N images (sorted by path) of each input path.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per catalog transaction.")] = 64,
    unboxed: Annotated[str, typer.Option(
        "--unboxed",
        help="An image of a COCO/YOLO set without a fracture box: 'negative' (the set boxed every fracture) or "
             "'unknown' (it did not: the image's fracture label stays unknown until an expert or a report says "
             "otherwise; its other boxes are kept). Applies to the images this run adds.")] = "negative",
    verify_renders: Annotated[bool, typer.Option(
        "--verify-renders",
        help="Decode the render and thumbnail of every catalogued image looked at (finds damage inside a file; "
             "a few ms an image) instead of the quick check (missing, empty, not a PNG, cut short).")] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest radiographs, detection sets and reports into the catalog (idempotent, resumable).

    A file whose decoded pixels are an image already catalogued (re-saved, re-encoded losslessly, exported
    under new UIDs) is counted as a duplicate of it, not added. A catalogued image whose render or thumbnail is
    missing or damaged gets it made again from its file (renders_restored); when its file is gone too it is
    named in a warning (renders_not_restored). Bad files never stop the batch: each becomes an ingest-error row
    with the stage and reason. One ingest at a time per workspace: a second one stops at once, naming the pid
    of the one running (exit code 3). Ctrl-C keeps what was written and says so (exit code 130); the same
    command resumes. The exit code is 1 when anything failed, 0 otherwise (duplicates and warnings do not fail).
    """
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import IngestInterrupted, IngestLockedError, ingest_paths
    from radloop.core.workspace import resolve_workspace

    paths = paths or []
    if unboxed not in UNBOXED_CHOICES:
        fail(f"--unboxed {unboxed}: choose {' or '.join(UNBOXED_CHOICES)}")
    if not paths and not reports:
        fail("nothing to ingest: give image/report paths and/or --reports FILE")
    missing = [str(path) for path in [*paths, *(reports or []), *([images] if images else [])] if not path.exists()]
    if missing and len(missing) == len(paths) + len(reports or []) + (1 if images else 0):
        fail(f"nothing to ingest: no such file or folder: {', '.join(missing)}")
    if images is not None and not images.is_dir():
        fail(f"--images {images} is not a folder")
    if images is not None and not any(path.suffix.lower() == ".json" for path in paths):
        console.print("[yellow]warning[/yellow] --images only says where a COCO json's images are; "
                      "no .json was given, so it is not used", highlight=False)
    catalog = Catalog.open(resolve_workspace(workspace))
    try:
        summary = ingest_paths(catalog, paths, reports=reports, images_dir=images, workers=workers,
                               dataset=dataset, progress=sys.stderr.isatty(), limit=limit,
                               batch_size=batch_size, unboxed=unboxed, verify_renders=verify_renders)
    except IngestLockedError as error:
        fail(str(error), code=3)
    except IngestInterrupted as interrupted:
        done = interrupted.summary
        fail(f"ingest {done.run_id} interrupted: of {done.images_found} image(s) found, {done.images_added} "
             f"were added and {done.images_skipped_existing} were already catalogued before it stopped; the batch "
             "in progress was not written. Run the same command again to resume (it adds only what is missing).",
             code=130)
    finally:
        catalog.dispose()
    result = summary.to_dict()
    result["workspace"] = str(catalog.workspace.root)
    if not json_output:
        for sample in summary.error_samples:
            console.print(f"[yellow]{sample['severity']}[/yellow] "
                          + escape(f"{sample['stage']}: {sample['path']}: {sample['reason']}"))
        for sample in summary.duplicate_samples:
            console.print("[cyan]duplicate[/cyan] " + escape(f"{sample['path']}: same pixels as "
                                                             f"{sample['duplicate_of']} ({sample['original_path']})"),
                          highlight=False)
        more = summary.images_skipped_duplicate - len(summary.duplicate_samples)
        if more > 0:
            console.print(f"[cyan]duplicate[/cyan] ... and {more} more (table duplicate_sources, run_id "
                          f"{summary.run_id})", highlight=False)
        if summary.renders_restored:
            console.print(f"[cyan]render[/cyan] {summary.renders_restored} missing or damaged render(s) made "
                          "again from their files", highlight=False)
        if summary.renders_not_restored:
            console.print(f"[yellow]render[/yellow] {summary.renders_not_restored} image(s) still without a usable "
                          "render (their files gone, changed or not given): the warnings of stage render name them "
                          "(`radloop info --check-renders` counts them)", highlight=False)
        result.pop("error_samples")
        result.pop("duplicate_samples")
    emit(result, json_output, title=f"ingest {summary.run_id}")
    report_rows = summary.reports_added + summary.reports_skipped_existing + summary.reports_updated
    if summary.images_found == 0 and report_rows == 0 and not summary.failed:
        ignored = f" ({summary.files_ignored} file(s) ignored by type)" if summary.files_ignored else ""
        console.print("[yellow]warning[/yellow] nothing to ingest was found in "
                      + escape(f"{', '.join(str(p) for p in [*paths, *(reports or [])])}{ignored}"), highlight=False)
    if summary.failed:
        if not json_output:
            console.print(f"[bold red]{summary.errors} input(s) failed[/bold red]; details: `radloop info` "
                          "or the ingest_errors table.")
        raise typer.Exit(1)


def info_command(
    errors: Annotated[int, typer.Option(
        "--errors", min=0, help="How many recent ingest errors (and warnings) to list.")] = 10,
    check_renders: Annotated[bool, typer.Option(
        "--check-renders",
        help="Also count the images whose render or thumbnail file is missing or damaged (reads two small pieces "
             "of every file: ~0.15 s per 3,600 images).")] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Catalog overview: table counts, images by body region / dataset / split / format, recent errors and warnings.

    With --check-renders, also the images whose render or thumbnail is missing or damaged (`radloop ingest` of
    their files makes them again).
    """
    from radloop.core.catalog import Catalog
    from radloop.core.catalog_info import catalog_info
    from radloop.core.workspace import resolve_workspace

    try:
        catalog = Catalog.open(resolve_workspace(workspace), create=False)
    except FileNotFoundError as error:
        fail(str(error))
    try:
        result = catalog_info(catalog, recent_errors=errors, check_renders=check_renders)
    finally:
        catalog.dispose()
    recent_errors = result.pop("recent_errors") if not json_output else []
    recent_warnings = result.pop("recent_warnings") if not json_output else []
    render_samples = result.pop("render_problem_samples", []) if not json_output else []
    emit(result, json_output, title=f"catalog {catalog.workspace.root}")
    for line in recent_errors:
        console.print(f"[red]ingest error[/red] {escape(line)}")
    for line in recent_warnings:
        console.print(f"[yellow]ingest warning[/yellow] {escape(line)}")
    for line in render_samples:
        console.print(f"[yellow]render[/yellow] {escape(line)}", highlight=False)


def bench_ingest_command(
    path: Annotated[Path, typer.Argument(help="Folder (or file) of images to ingest, typically DICOMs.")],
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=1,
                                                   help="Processes (default: CPU cores).")] = None,
    repeat: Annotated[int, typer.Option("--repeat", "-r", min=1, help="Timed repeats; the best is kept.")] = 3,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N images.")] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Full-ingest images/s (into a temporary workspace) vs. pydicom decode alone on the same files (the bound).

    JSON keys: images_per_s, decode_bound_per_s, ratio (= images_per_s / decode_bound_per_s, both measured
    with the same number of workers), plus per-worker figures, cpu_ratio and seconds per image by stage.
    The ingest goes into a temporary workspace (deleted afterwards); --workspace is not touched.
    """
    from radloop.core.ingest_bench import bench_ingest

    if not path.exists():
        fail(f"no such file or folder: {path}")
    result = bench_ingest(path, workers=workers, repeat=repeat, limit=limit,
                          progress=not json_output and progress_bars())
    if result["n_images"] == 0:
        fail(f"no ingestible images under {path}")
    emit(result, json_output, title="bench ingest")
