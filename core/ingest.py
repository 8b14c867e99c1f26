"""Ingest orchestration: discover inputs, decode/render in a process pool, write the catalog in batches.

Guarantees:
- idempotent: images are keyed by their content hash (``I-`` + 16 hex), reports by their source id,
  boxes by (image, source); re-ingesting the same files adds nothing;
- one box per box: boxes for an image that already has boxes from another source (the same set exported as
  COCO and YOLO, a duplicate file's detection set) are stored only when no existing box has their
  vocabulary label and the same geometry (IoU >= 0.9 or every edge within 2 px,
  :func:`radloop.core.boxes.same_box`); the others are counted in ``boxes_skipped_duplicate``;
- one image per picture: a new file whose decoded pixels (:func:`radloop.core.deid.pixel_hash`) are those of a
  catalogued image, or of one added earlier in the run, is not a second image (it would be counted twice in
  active learning, possibly in another split): it is counted as a duplicate and its path kept in
  ``duplicate_sources`` (its content hash makes the next run skip it like a catalogued file; its boxes, from a
  detection set, go to the catalogued image).  Same pixels under another SOPInstanceUID are a duplicate too.
  A DICOM file with the SOPInstanceUID (pseudonym) of a catalogued image but other pixels (a corrected
  re-send?) is not ingested either: the first one stays, and every run warns (an ``IngestError`` row, stage
  ``duplicate``) naming both files until it is resolved.  Within one run "first" is the first written: the
  first by path with one worker or within a batch, else the first decoded.  Rows ingested before pixel
  hashes existed get theirs (and their BurnedInAnnotation flag) when their file is re-ingested (decoded once,
  not rendered again); the files at those rows' paths are read first, so a new copy of one is its duplicate.
  Two such rows that turn out to be one image both stay, and every run that reads the younger one's file warns;
- privacy: a DICOM with BurnedInAnnotation YES is flagged (kept out of active-learning rounds) and warned about
  (an ``IngestError`` row, stage ``privacy``), again in every run that reads its file;
- resumable: each batch is one transaction and a new image's renders are renamed into place once it is
  committed (:mod:`radloop.core.ingest_renders`), so an ingest killed at any point (even ``kill -9``) resumes on
  the next run without duplicates, and leaves no render that the catalog does not name;
- renders restored: a catalogued image whose file is read again gets its render and thumbnail checked
  (:func:`radloop.core.render.render_problem`: gone, empty, not a PNG, cut short; with ``verify_renders`` also
  decoded) and, when either is lost or damaged, made again from that file (``renders_restored``; id, hashes and
  catalog row unchanged).  The images of the run's datasets catalogued from under its input folders whose file
  was not read (gone, changed, not among the inputs) have their renders checked too; a lost one is counted in
  ``renders_not_restored`` with a warning (stage ``render``) naming the image and why, and the run goes on.
  The common re-run pays two small reads a file (0.1-0.2 s of CPU for 3,631 images), no decode;
- one at a time: an ingest holds the workspace's ingest lock (:mod:`radloop.core.ingest_lock`); a second one
  raises :class:`IngestLockedError` naming the process that holds it, before it reads anything;
- interrupted (Ctrl-C): :class:`IngestInterrupted` (:mod:`radloop.core.ingest_summary`), whose summary says what
  was written (a Ctrl-C that lands while a batch commits waits for it); the log is written too.  Killed, it takes
  its worker processes with it, quietly (:func:`radloop.core.ingest_worker.init_worker`);
- bad input never stops the batch: every failure becomes an ``IngestError`` row (stage + reason); a DICOM object of a
  class that holds no image (structured report, presentation state, encapsulated PDF) is skipped with a warning
  (stage ``skip``, ``files_not_images``), not a failure.

Python API (used by ``radloop ingest`` and ``radloop demo``): :func:`ingest_paths`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import or_, select

from radloop.core.catalog import Catalog
from radloop.core.ingest_lock import IngestLockedError, ingest_lock
from radloop.core.ingest_renders import remove_stale_temporaries
from radloop.core.ingest_reports import link_unlinked_reports, write_reports
from radloop.core.ingest_sources import Discovery, ImageTask, discover
from radloop.core.ingest_summary import IngestInterrupted, IngestSummary
from radloop.core.ingest_worker import (
    ImageOutcome, RenderStorageError, WorkerContext, init_worker, process_in_worker, process_task,
)
from radloop.core.ingest_writer import CatalogWriter, resolve_errors
from radloop.core.render import render_problem
from radloop.core.schema import Image, IngestError, Study

__all__ = ["IngestInterrupted", "IngestLockedError", "IngestSummary", "default_workers", "ingest_paths",
           "propagate_study_regions"]


def default_workers() -> int:
    """Worker processes by default: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute against the current folder, ``..`` folded, symbolic links not followed."""
    return Path(os.path.abspath(path))


def ingest_paths(catalog: Catalog, paths: Iterable[str | Path], *, reports: Iterable[str | Path] | None = None,
                 images_dir: str | Path | None = None, workers: int | None = None, dataset: str | None = None,
                 progress: bool = True, limit: int | None = None, batch_size: int = 64,
                 unboxed: str = "negative", verify_renders: bool = False) -> IngestSummary:
    """Ingest images, detection sets and reports into ``catalog``.

    Args:
        catalog: an open catalog (its workspace receives the renders).
        paths: DICOM/PNG/JPEG files or folders (recursive), a COCO json, a YOLO folder, report files.
        reports: report files (Open-i XML tarball/folder/file, CSV ``report_id,text[,study_id,image,report_date]``).
        images_dir: image folder of a COCO json (default: the json's folder).
        workers: decode/render processes (default: the usable CPU cores; 1 = in this process).
        dataset: dataset name for every image (default: each input path's name).
        progress: show a progress bar on stderr.
        limit: only the first ``limit`` images (sorted by path) of each input path, e.g. for a quick demo.
        batch_size: images per catalog transaction.
        unboxed: ``"negative"`` (default) or ``"unknown"``: what an image of a COCO / YOLO set without a
            fracture box means (:data:`radloop.core.ingest_sources.UNBOXED_CHOICES`); it applies to the images
            this run adds: an image an earlier run catalogued keeps what it was given (a later run of the same
            set with the default does not make it a negative).
        verify_renders: decode the render and thumbnail of every catalogued image looked at (damage inside a
            file; ~2.5 ms of CPU an image of the fracture set) instead of the quick check (gone, empty, not a
            PNG, cut short; ~40 us).

    Returns:
        The run's :class:`IngestSummary` (also written to ``<workspace>/logs/ingest-<run_id>.json``).

    Raises:
        OSError: a render or thumbnail write refused for a full disk, a quota or a read-only file system; the run
            stops at the first (every later image would fail alike), naming the folder and the cause; the images
            committed before stay, and a rerun once there is room continues.
    """
    started = time.perf_counter()
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    reports = [reports] if isinstance(reports, (str, os.PathLike)) else list(reports or [])
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    workers = max(1, int(workers or default_workers()))
    summary = IngestSummary(run_id=run_id, workers=workers)
    try:
        with ingest_lock(catalog.workspace.root, run_id) as exclusive:
            remove_stale_temporaries(catalog.workspace.root, exclusive=exclusive)  # what a killed run left
            try:
                _ingest(catalog, summary, paths, reports, images_dir=images_dir, dataset=dataset,
                        progress=progress, limit=limit, batch_size=batch_size, unboxed=unboxed,
                        verify_renders=verify_renders)
            except BaseException:  # renders of a batch rolled back, or made but never handed over: no image's
                remove_stale_temporaries(catalog.workspace.root, exclusive=exclusive)
                raise
    except RenderStorageError as error:
        raise _stopped_for_storage(catalog, summary, started, error) from None
    except KeyboardInterrupt:
        # the batches written so far are committed; the one in hand was rolled back: a re-run resumes
        summary.interrupted = True
        _finish(catalog, summary, started)
        raise IngestInterrupted(summary) from None
    _finish(catalog, summary, started)
    return summary


def _stopped_for_storage(catalog: Catalog, summary: IngestSummary, started: float,
                         error: RenderStorageError) -> OSError:
    """The one-line error for a run stopped by a render write its file system refused: the folder (``renders``
    or ``thumbs``), the cause, what stays and how to continue; the run's log is written when there is room."""
    root = catalog.workspace.root
    try:
        folder = root / Path(error.filename).relative_to(root).parts[0]
    except (TypeError, ValueError, IndexError):
        folder = Path(error.filename or root).parent
    summary.interrupted = True
    try:
        _finish(catalog, summary, started)
    except OSError:  # the log is on the same full disk
        pass
    return OSError(error.errno, f"ingest stopped: {error.strerror}; the {summary.images_added} image(s) added "
                   "before stay catalogued: free space (or make the folder writable) and run the same command "
                   "again to continue", str(folder))


def _finish(catalog: Catalog, summary: IngestSummary, started: float) -> None:
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    summary.images_per_s = round(summary.images_found / summary.elapsed_s, 3) if summary.elapsed_s else 0.0
    summary.stage_seconds = {stage: round(seconds, 3) for stage, seconds in summary.stage_seconds.items()}
    _write_log(catalog, summary)


def _ingest(catalog: Catalog, summary: IngestSummary, paths: list, reports: list, *,
            images_dir: str | Path | None, dataset: str | None, progress: bool, limit: int | None,
            batch_size: int, unboxed: str, verify_renders: bool) -> None:
    """The body of :func:`ingest_paths`, run under the workspace's ingest lock; fills in ``summary``."""
    run_id, workers = summary.run_id, summary.workers
    # absolute (symbolic links kept as given): the catalog's source paths must not depend on the folder the run
    # started in (a restore, a 16-bit original read for pretraining), and `radloop ingest .` names its dataset
    inputs = [_absolute(p) for p in paths]
    found = discover(inputs, images_dir=_absolute(images_dir) if images_dir else None,
                     dataset=dataset, reports=[_absolute(r) for r in reports], limit=limit, unboxed=unboxed)
    # where the inputs' images live: the folders given, a file's folder (a COCO json beside its images), --images
    scopes = sorted({str(path if path.is_dir() else path.parent) for path in inputs}
                    | ({str(_absolute(images_dir))} if images_dir else set()))
    summary.images_found = len(found.image_tasks)
    summary.files_ignored = len(found.ignored_files)
    summary.sources = dict(found.sources)
    writer = CatalogWriter(catalog, summary, found.image_tasks, batch_size)
    # errors an earlier run recorded about these input paths themselves (a missing path, an unreadable COCO
    # json, a COCO json without its images) are looked at again now: this run records them again if they remain
    with catalog.session() as session:
        resolve_errors(session, [str(p) for p in paths] + [str(Path(p).resolve()) for p in paths], run_id)
    for path, stage, reason in found.errors:
        writer.add_error(path, stage, reason)
    writer.flush()
    context = WorkerContext(workspace_root=catalog.workspace.root, pseudonym_key=catalog.workspace.pseudonym_key,
                            existing_hashes=frozenset(writer.known_hashes), backfill_hashes=writer.backfill_hashes,
                            duplicate_hashes=frozenset(writer.duplicate_of), render_paths=writer.render_paths,
                            verify_renders=verify_renders)
    backfills_first = [index for index, task in enumerate(found.image_tasks) if task.path in writer.backfill_paths]
    # closed on the way out, an interrupt's included: the pool ends (its workers with it) before the lock is let go
    with closing(_run_tasks(found.image_tasks, context, workers, first=backfills_first)) as outcomes:
        try:
            for outcome in _progress(outcomes, len(found.image_tasks), progress):
                writer.add(outcome)
        except RenderStorageError:  # the renders' disk is full: the images handled before it are committed
            writer.flush()
            raise
        writer.flush()
    _report_unrestored_renders(catalog, found, scopes, writer, summary, decode=verify_renders)
    propagate_study_regions(catalog, writer.touched_studies)
    if summary.images_added:  # reports ingested before their images get their study now
        summary.reports_linked += link_unlinked_reports(catalog)
    for report_file in found.report_files:
        write_reports(catalog, report_file, summary, run_id,
                      dataset=dataset or found.report_datasets.get(str(report_file)))


def propagate_study_regions(catalog: Catalog, study_ids: Iterable[str]) -> int:
    """Give images without a body region the majority region of their study's other images.

    All images of a study show the same body part (e.g. Roboflow copies of one source radiograph, of which
    only some carry the boxes whose class names the region).  The study gets that region too.
    Returns the number of images updated.
    """
    updated, study_ids = 0, list(study_ids)
    with catalog.session() as session:
        for start in range(0, len(study_ids), 500):
            chunk = study_ids[start:start + 500]
            images = session.scalars(select(Image).where(Image.study_id.in_(chunk))).all()
            regions: dict[str, Counter] = {}
            for image in images:
                if image.body_region:
                    regions.setdefault(image.study_id, Counter())[image.body_region] += 1
            for image in images:
                if image.body_region is None and image.study_id in regions:
                    image.body_region = regions[image.study_id].most_common(1)[0][0]
                    image.meta = dict(image.meta or {}, body_region_from="study")
                    updated += 1
            for study in session.scalars(select(Study).where(Study.id.in_(list(regions)))).all():
                if study.body_region is None:
                    study.body_region = regions[study.id].most_common(1)[0][0]
    return updated


def _report_unrestored_renders(catalog: Catalog, found: Discovery, scopes: list[str], writer: CatalogWriter,
                               summary: IngestSummary, *, decode: bool) -> None:
    """Warn about each image of the run's datasets, catalogued from under the run's input folders (``scopes``),
    whose render or thumbnail is missing or damaged and whose file the run did not read, so could not make it
    again: its file is gone, has changed, or was not an input.

    A re-run of the same inputs reads every file, so it checks nothing here (the workers checked them all); a
    run that adds a new folder to a large dataset does not look at the renders of the dataset's other folders.
    """
    if not found.datasets or not scopes:
        return
    clock = time.process_time()
    under_inputs = or_(*(Image.source_path.startswith(scope.rstrip(os.sep) + os.sep, autoescape=True)
                         for scope in scopes))
    with catalog.session() as session:
        unread = [content for content in session.scalars(select(Image.content_hash).where(
            Image.dataset.in_(sorted(found.datasets)), under_inputs)) if content not in writer.read_hashes]
    inputs = {task.path for task in found.image_tasks}
    for start in range(0, len(unread), 500):
        lost = []
        with catalog.session() as session:
            for row in sorted(session.execute(
                    select(Image.id, Image.source_path, Image.render_path, Image.thumb_path)
                    .where(Image.content_hash.in_(unread[start:start + 500]))), key=lambda row: row.source_path):
                problems = [f"{relative} {problem}" for relative in (row.render_path, row.thumb_path)
                            if (problem := render_problem(catalog.workspace.absolute(relative), decode=decode))]
                if problems:
                    lost.append((row, problems))
            # every run that finds a render still lost says so again, replacing what earlier runs said
            resolve_errors(session, [row.source_path for row, _ in lost], summary.run_id)
            for row, problems in lost:
                why = _why_not_read(row.source_path, inputs, writer)
                reason = f"{row.id}: {'; '.join(problems)}; not restored: {why}"
                session.add(IngestError(run_id=summary.run_id, path=row.source_path, stage="render",
                                        reason="warning: " + reason))
                summary.record_problem(row.source_path, "render", reason, warning=True)
                summary.renders_not_restored += 1
    stages = summary.stage_seconds
    stages["render_check"] = stages.get("render_check", 0.0) + time.process_time() - clock


def _why_not_read(source_path: str, inputs: set[str], writer: CatalogWriter) -> str:
    if source_path in writer.failed_paths:
        return "its file could not be read in this run (see its error)"
    if not os.path.exists(source_path):
        return "its file is gone"
    if source_path in inputs:
        return "its file has changed since it was catalogued (not the same bytes)"
    return "its file was not among this run's inputs (ingest it to restore the render)"


def _run_tasks(tasks: list[ImageTask], context: WorkerContext, workers: int,
               first: Iterable[int] = ()) -> Iterator[ImageOutcome]:
    """Outcomes of ``tasks``: those of the task indices ``first`` (the files of rows awaiting a pixel-hash
    backfill) before any other, so that the rows have their keys before a new file is compared with them."""
    chosen = set(first)
    phases = [phase for phase in (sorted(chosen), [i for i in range(len(tasks)) if i not in chosen]) if phase]
    if workers == 1 or len(tasks) <= 1:
        for phase in phases:
            for index in phase:
                yield process_task(index, tasks[index], context)
        return
    # fork: workers inherit the imported modules and the context without pickling the hash set.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunksize = max(1, min(8, len(tasks) // (workers * 16)))
    processes = min(workers, len(tasks))
    with multiprocessing.get_context(method).Pool(processes, initializer=init_worker,
                                                     initargs=(context, os.getpid())) as pool:
        for phase in phases:
            # Largest first (longest-processing-time scheduling): one big file last would idle the other workers.
            order = sorted(phase, key=lambda index: -_file_size(tasks[index].path))
            yield from pool.imap_unordered(process_in_worker, ((index, tasks[index]) for index in order),
                                           chunksize=chunksize)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _progress(outcomes: Iterator[ImageOutcome], total: int, enabled: bool) -> Iterator[ImageOutcome]:
    if not enabled or total == 0:
        yield from outcomes
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc="ingest", file=sys.stderr, dynamic_ncols=True) as bar:
        for outcome in outcomes:
            bar.update(1)
            yield outcome


def _write_log(catalog: Catalog, summary: IngestSummary) -> None:
    logs = catalog.workspace.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"ingest-{summary.run_id}.json").write_text(json.dumps(summary.to_dict(), indent=2))
