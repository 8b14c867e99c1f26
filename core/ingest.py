"""Ingest orchestration: discover inputs, decode/render in a process pool, write the catalog in batches.

Guarantees:
- idempotent: images are keyed by their content hash (``I-`` + 16 hex), reports by their source id,
  boxes by (image, source); re-ingesting the same files adds nothing;
- resumable: each batch is one transaction and renders are renamed into place, so an ingest killed at any
  point (even ``kill -9``) resumes on the next run without duplicates;
- bad input never stops the batch: every failure becomes an ``IngestError`` row (stage + reason).

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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.ingest_reports import write_reports
from radloop.core.ingest_sources import ImageTask, box_label_for_class, discover
from radloop.core.ingest_worker import ImageOutcome, WorkerContext, init_worker, process_in_worker, process_task
from radloop.core.schema import Annotation, Image, IngestError, Study
from radloop.core.splits import split_for_study

__all__ = ["IngestSummary", "default_workers", "ingest_paths", "propagate_study_regions"]

ERROR_SAMPLE_LIMIT = 20


@dataclass
class IngestSummary:
    """What one ingest run did.  ``errors`` counts failures (files/reports not ingested)."""

    run_id: str
    images_found: int = 0
    images_added: int = 0
    images_skipped_existing: int = 0
    studies_added: int = 0
    annotations_added: int = 0
    reports_added: int = 0
    reports_updated: int = 0
    reports_skipped_existing: int = 0
    reports_linked: int = 0
    errors: int = 0
    warnings: int = 0
    files_ignored: int = 0
    workers: int = 1
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    #: CPU seconds summed over images (worker stages: read, hash, decode incl. windowing, render) and the
    #: main process's catalog writes ("catalog"): where an ingest spends its CPU.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error_samples: list[dict] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.errors > 0

    def to_dict(self) -> dict:
        return asdict(self)

    def record_problem(self, path: str, stage: str, reason: str, *, warning: bool = False) -> None:
        if warning:
            self.warnings += 1
        else:
            self.errors += 1
            self.errors_by_stage[stage] = self.errors_by_stage.get(stage, 0) + 1
        if len(self.error_samples) < ERROR_SAMPLE_LIMIT:
            self.error_samples.append({"path": path, "stage": stage, "reason": reason,
                                       "severity": "warning" if warning else "error"})


def default_workers() -> int:
    """Worker processes by default: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ingest_paths(catalog: Catalog, paths: Iterable[str | Path], *, reports: Iterable[str | Path] | None = None,
                 images_dir: str | Path | None = None, workers: int | None = None, dataset: str | None = None,
                 progress: bool = True, limit: int | None = None, batch_size: int = 64) -> IngestSummary:
    """Ingest images, detection sets and reports into ``catalog``.

    Args:
        catalog: an open catalog (its workspace receives the renders).
        paths: DICOM/PNG/JPEG files or folders (recursive), a COCO json, a YOLO folder, report files.
        reports: report files (Open-i XML tarball/folder/file, CSV ``report_id,text[,study_id,image]``).
        images_dir: image folder of a COCO json (default: the json's folder).
        workers: decode/render processes (default: the usable CPU cores; 1 = in this process).
        dataset: dataset name for every image (default: each input path's name).
        progress: show a progress bar on stderr.
        limit: only the first ``limit`` images (sorted by path) of each input path, e.g. for a quick demo.
        batch_size: images per catalog transaction.

    Returns:
        The run's :class:`IngestSummary` (also written to ``<workspace>/logs/ingest-<run_id>.json``).
    """
    started = time.perf_counter()
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    reports = [reports] if isinstance(reports, (str, os.PathLike)) else list(reports or [])
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    workers = max(1, int(workers or default_workers()))
    summary = IngestSummary(run_id=run_id, workers=workers)
    found = discover([Path(p) for p in paths], images_dir=Path(images_dir) if images_dir else None,
                     dataset=dataset, reports=[Path(r) for r in reports], limit=limit)
    summary.images_found = len(found.image_tasks)
    summary.files_ignored = len(found.ignored_files)
    summary.sources = dict(found.sources)
    _remove_stale_temporaries(catalog.workspace.root)
    writer = _CatalogWriter(catalog, summary, found.image_tasks, batch_size)
    # errors an earlier run recorded about these input paths themselves (a missing path, an unreadable COCO
    # json, a COCO json without its images) are looked at again now: this run records them again if they remain
    with catalog.session() as session:
        _resolve_errors(session, [str(p) for p in paths] + [str(Path(p).resolve()) for p in paths], run_id)
    for path, stage, reason in found.errors:
        writer.add_error(path, stage, reason)
    writer.flush()
    context = WorkerContext(workspace_root=catalog.workspace.root, pseudonym_key=catalog.workspace.pseudonym_key,
                            existing_hashes=frozenset(writer.known_hashes))
    outcomes = _run_tasks(found.image_tasks, context, workers)
    for outcome in _progress(outcomes, len(found.image_tasks), progress):
        writer.add(outcome)
    writer.flush()
    propagate_study_regions(catalog, writer.touched_studies)
    for report_file in found.report_files:
        write_reports(catalog, report_file, summary, run_id, dataset=dataset)
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    summary.images_per_s = round(summary.images_found / summary.elapsed_s, 3) if summary.elapsed_s else 0.0
    summary.stage_seconds = {stage: round(seconds, 3) for stage, seconds in summary.stage_seconds.items()}
    _write_log(catalog, summary)
    return summary


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


def _remove_stale_temporaries(root: Path) -> None:
    """Delete half-written renders (``.<name>.<pid>.tmp``) left by an ingest that was killed.

    Only files of processes that no longer exist are removed, so a concurrent ingest is never disturbed.
    """
    for folder in (root / "renders", root / "thumbs"):
        for path in folder.glob("*/.*.tmp"):
            try:
                pid = int(path.name.rsplit(".", 2)[-2])
                os.kill(pid, 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
            except (ValueError, PermissionError, IndexError):
                continue


def _run_tasks(tasks: list[ImageTask], context: WorkerContext, workers: int) -> Iterator[ImageOutcome]:
    if workers == 1 or len(tasks) <= 1:
        for index, task in enumerate(tasks):
            yield process_task(index, task, context)
        return
    # Largest files first (longest-processing-time scheduling): one big file last would idle the other workers.
    order = sorted(range(len(tasks)), key=lambda index: -_file_size(tasks[index].path))
    # fork: workers inherit the imported modules and the context without pickling the hash set.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunksize = max(1, min(8, len(tasks) // (workers * 16)))
    processes = min(workers, len(tasks))
    with multiprocessing.get_context(method).Pool(processes, initializer=init_worker, initargs=(context,)) as pool:
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


def _resolve_errors(session, paths: list[str], run_id: str) -> None:
    """Delete earlier runs' ``IngestError`` rows for ``paths``: they were ingested (or re-examined) now, so the
    catalog's error count is what still needs attention (each run's JSON log in ``logs/`` keeps the history)."""
    from sqlalchemy import delete

    paths = sorted(set(paths))
    for start in range(0, len(paths), 500):
        session.execute(delete(IngestError).where(
            IngestError.path.in_(paths[start:start + 500]), IngestError.run_id != run_id))


def _write_log(catalog: Catalog, summary: IngestSummary) -> None:
    logs = catalog.workspace.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"ingest-{summary.run_id}.json").write_text(json.dumps(summary.to_dict(), indent=2))


class _CatalogWriter:
    """Collects worker outcomes and writes them to the catalog, one transaction per batch."""

    def __init__(self, catalog: Catalog, summary: IngestSummary, tasks: list[ImageTask], batch_size: int):
        self.catalog, self.summary, self.tasks, self.batch_size = catalog, summary, tasks, max(1, batch_size)
        with catalog.session() as session:
            self.known_hashes: set[str] = set(session.scalars(select(Image.content_hash)).all())
        self.pending: list[ImageOutcome] = []
        self.touched_studies: set[str] = set()
        self.pending_errors: list[tuple[str, str, str]] = []
        self.last_flush = time.monotonic()

    def add_error(self, path: str, stage: str, reason: str) -> None:
        self.pending_errors.append((path, stage, reason))
        self.summary.record_problem(path, stage, reason)

    def add(self, outcome: ImageOutcome) -> None:
        for stage, seconds in outcome.stage_seconds.items():
            self.summary.stage_seconds[stage] = self.summary.stage_seconds.get(stage, 0.0) + seconds
        if outcome.status == "error":
            self.add_error(self.tasks[outcome.index].path, outcome.stage or "decode", outcome.reason or "")
        else:
            self.pending.append(outcome)
        if len(self.pending) + len(self.pending_errors) >= self.batch_size or time.monotonic() - self.last_flush > 5:
            self.flush()

    def flush(self) -> None:
        if not self.pending and not self.pending_errors:
            return
        started = time.process_time()
        with self.catalog.session() as session:
            for path, stage, reason in self.pending_errors:
                session.add(IngestError(run_id=self.summary.run_id, path=path, stage=stage, reason=reason))
            self._write_images(session)
            # every path looked at now replaces what earlier runs said about it (this run's error rows stay)
            examined = [self.tasks[outcome.index].path for outcome in self.pending]
            _resolve_errors(session, examined + [path for path, _, _ in self.pending_errors], self.summary.run_id)
        self.pending, self.pending_errors = [], []
        stages = self.summary.stage_seconds
        stages["catalog"] = stages.get("catalog", 0.0) + time.process_time() - started
        self.last_flush = time.monotonic()

    def _write_images(self, session) -> None:
        study_ids = {o.study_id for o in self.pending if o.status == "added"}
        existing_studies = set(session.scalars(select(Study.id).where(Study.id.in_(study_ids))).all()) \
            if study_ids else set()
        for outcome in self.pending:
            task = self.tasks[outcome.index]
            if outcome.status == "added" and outcome.content_hash not in self.known_hashes:
                columns = dict(outcome.image)
                if outcome.study_id not in existing_studies:
                    existing_studies.add(outcome.study_id)
                    session.add(Study(id=outcome.study_id, dataset=task.dataset,
                                      body_region=columns.get("body_region"), modality=columns.get("modality"),
                                      split=split_for_study(outcome.study_id)))
                    session.flush()  # no ORM relationships: flush the study before its image (foreign key)
                    self.summary.studies_added += 1
                meta = dict(columns.pop("meta", None) or {})
                if task.box_source:
                    meta["box_source"] = task.box_source
                session.add(Image(**columns, meta=meta))
                session.flush()  # the image before its boxes
                self.known_hashes.add(outcome.content_hash)
                self.touched_studies.add(outcome.study_id)
                self.summary.images_added += 1
                self._add_boxes(session, task, outcome.image_id, columns["width"], columns["height"], new=True)
                continue
            # Already catalogued (earlier run, or the same bytes twice in this run).
            self.summary.images_skipped_existing += 1
            if task.box_source:
                image = session.get(Image, outcome.image_id)
                if image is not None:
                    self.touched_studies.add(image.study_id)
                    self._attach_detection_source(image, task)
                    self._add_boxes(session, task, image.id, image.width, image.height, new=False)

    def _attach_detection_source(self, image: Image, task: ImageTask) -> None:
        """An image already catalogued (e.g. as a plain JPEG) now listed by a detection set."""
        meta = dict(image.meta or {})
        if meta.get("box_source") != task.box_source and "box_source" not in meta:
            meta["box_source"] = task.box_source
            image.meta = meta
        if image.body_region is None and task.body_region:
            image.body_region = task.body_region

    def _add_boxes(self, session, task: ImageTask, image_id: str, width: int, height: int, *, new: bool) -> None:
        if not task.boxes:
            return
        if not new and session.scalars(select(Annotation.id).where(
                Annotation.image_id == image_id, Annotation.source == task.box_source).limit(1)).first():
            return  # this source's boxes are already there (re-ingest)
        for box in task.boxes:
            x, y, w, h = box.to_pixels(width, height)
            session.add(Annotation(image_id=image_id, source=task.box_source, kind="box",
                                   label=box_label_for_class(box.source_label), source_label=box.source_label,
                                   x=x, y=y, w=w, h=h, meta={}))
            self.summary.annotations_added += 1

