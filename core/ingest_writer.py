"""The catalog side of an ingest: worker outcomes written in batches, one transaction each, in the main process.

New images (with their study and boxes), duplicates of catalogued images (``duplicate_sources``, see
:mod:`radloop.core.ingest`), SOPInstanceUID conflicts, pixel-hash backfills and ingest-error rows.  Boxes that
an image already has from another source are not stored twice (``CatalogWriter._add_boxes``).

Warnings about a catalogued image (BurnedInAnnotation; a twin catalogued before duplicates were recognised) are
made again each time its file is ingested again, from the catalog (no decode): every path looked at replaces
what earlier runs said about it, so ``radloop info``'s error count stays what still needs attention.

A new image's render and thumbnail, written by a worker under pending names, are renamed into place once its
batch is committed, and deleted when it was rolled back or the file did not become an image
(:mod:`radloop.core.ingest_renders`).  A catalogued image whose render a worker made again
(:mod:`radloop.core.ingest_worker`) is counted in ``renders_restored``; one whose render could not be made is an
error of stage ``render``.
"""

from __future__ import annotations

import copy
import time

from sqlalchemy import func, literal, select
from sqlalchemy.exc import OperationalError

from radloop.core.boxes import same_box
from radloop.core.catalog import Catalog
from radloop.core.catalog_info import WARNING_PREFIX
from radloop.core.ingest_keys import Catalogued, CataloguedKeys
from radloop.core.ingest_renders import settle_renders
from radloop.core.ingest_sources import ImageTask, box_label_for_class, has_fracture_box
from radloop.core.ingest_summary import IngestSummary, interrupt_deferred
from radloop.core.ingest_worker import ImageOutcome
from radloop.core.schema import Annotation, DuplicateSource, Image, IngestError, Study
from radloop.core.splits import split_for_study
from radloop.core.workspace import catalog_write_failure

__all__ = ["CatalogWriter", "resolve_errors"]

DUPLICATE_SAMPLE_LIMIT = 20


def resolve_errors(session, paths: list[str], run_id: str) -> None:
    """Delete earlier runs' ``IngestError`` rows for ``paths``: they were ingested (or re-examined) now, so the
    catalog's error count is what still needs attention (each run's JSON log in ``logs/`` keeps the history)."""
    from sqlalchemy import delete

    paths = sorted(set(paths))
    for start in range(0, len(paths), 500):
        session.execute(delete(IngestError).where(
            IngestError.path.in_(paths[start:start + 500]), IngestError.run_id != run_id))


class CatalogWriter:
    """Collects worker outcomes and writes them to the catalog, one transaction per batch."""

    def __init__(self, catalog: Catalog, summary: IngestSummary, tasks: list[ImageTask], batch_size: int):
        self.catalog, self.summary, self.tasks, self.batch_size = catalog, summary, tasks, max(1, batch_size)
        with catalog.session() as session:
            self.known_hashes: set[str] = set(session.scalars(select(Image.content_hash)).all())
            backfills = session.execute(
                select(Image.content_hash, Image.source_path).where(Image.pixel_hash.is_(None))).all()
            self.backfill_hashes = frozenset(content for content, _ in backfills)
            #: where the files of those rows were: read first (see ``ingest._run_tasks``), so that a new copy of
            #: one is compared with its keys whichever batch it falls in
            self.backfill_paths = frozenset(path for _, path in backfills)
            #: content hash of a recorded duplicate file -> the catalogued image it duplicates
            self.duplicate_of: dict[str, str] = dict(session.execute(
                select(DuplicateSource.content_hash, DuplicateSource.image_id)).all())
            #: content hash -> (render, thumbnail) path of the catalogued images whose paths are not the ones
            #: ingest gives an image (ingest_worker.render_relative_paths): the workers check and restore those
            moved = (Image.render_path != _default_path("renders")) | (Image.thumb_path != _default_path("thumbs"))
            self.render_paths: dict[str, tuple[str, str]] = {
                content: (render, thumb) for content, render, thumb in session.execute(
                    select(Image.content_hash, Image.render_path, Image.thumb_path).where(moved))}
        self.known_hashes |= set(self.duplicate_of)
        #: content hashes of the files read in this run (their catalogued images' renders were checked), and the
        #: paths of those that could not be read
        self.read_hashes: set[str] = set()
        self.failed_paths: set[str] = set()
        #: catalogued images whose render (or thumbnail) this run made again
        self.restored: set[str] = set()
        self.pending: list[ImageOutcome] = []
        self.touched_studies: set[str] = set()
        self.pending_errors: list[tuple[str, str, str]] = []
        #: (stage, image id) of the catalogued images warned about in this run: one warning each per run
        self.warned: set[tuple[str, str]] = set()
        #: task indices of the batch's new files that became images (their renders go into place on commit)
        self.placed: set[int] = set()
        self.last_flush = time.monotonic()

    def add_error(self, path: str, stage: str, reason: str) -> None:
        self.pending_errors.append((path, stage, reason))
        self.summary.record_problem(path, stage, reason)

    def add(self, outcome: ImageOutcome) -> None:
        for stage, seconds in outcome.stage_seconds.items():
            self.summary.stage_seconds[stage] = self.summary.stage_seconds.get(stage, 0.0) + seconds
        if outcome.status == "error":
            self.failed_paths.add(self.tasks[outcome.index].path)
            self.add_error(self.tasks[outcome.index].path, outcome.stage or "decode", outcome.reason or "")
        elif outcome.status == "skipped":  # a warning row, replaced by the next run's like an error row
            path, reason = self.tasks[outcome.index].path, outcome.reason or ""
            self.pending_errors.append((path, outcome.stage or "skip", WARNING_PREFIX + reason))
            self.summary.record_problem(path, outcome.stage or "skip", reason, warning=True)
            self.summary.files_not_images += 1
        else:
            self.read_hashes.add(outcome.content_hash)
            self.pending.append(outcome)
        if len(self.pending) + len(self.pending_errors) >= self.batch_size or time.monotonic() - self.last_flush > 5:
            self.flush()

    def flush(self) -> None:
        if not self.pending and not self.pending_errors:
            return
        started = time.process_time()
        # the summary counts what is committed: a batch rolled back (Ctrl-C or a database error mid-write) takes
        # its counts back, or an interrupted run said it added images that the re-run then added again
        counted = copy.deepcopy(vars(self.summary))
        self.placed, committed = set(), False
        try:
            with self.catalog.session() as session:
                for path, stage, reason in self.pending_errors:
                    session.add(IngestError(run_id=self.summary.run_id, path=path, stage=stage, reason=reason))
                self._write_images(session)
                # every path looked at now replaces what earlier runs said about it (this run's error rows stay)
                examined = [self.tasks[outcome.index].path for outcome in self.pending]
                resolve_errors(session, examined + [path for path, _, _ in self.pending_errors],
                               self.summary.run_id)
                with interrupt_deferred():  # a Ctrl-C now waits until the commit is known and followed up
                    session.commit()
                    committed = True
                    # the new images' renders go into place, those of files that did not become images away
                    settle_renders(self.catalog.workspace.root, self._renders(self.placed))
        except BaseException as error:
            if not committed:
                vars(self.summary).update(counted)
                settle_renders(self.catalog.workspace.root, self._renders(set()))  # rolled back: none is an image
            full = isinstance(error, OperationalError) and catalog_write_failure(
                error, self.catalog.workspace, f"a batch of {len(self.pending)} image(s) to the catalog (nothing of "
                "it was kept; the same command resumes once there is room)")
            if full:
                raise full from None
            raise
        self.pending, self.pending_errors = [], []
        stages = self.summary.stage_seconds
        stages["catalog"] = stages.get("catalog", 0.0) + time.process_time() - started
        self.last_flush = time.monotonic()

    def _renders(self, placed: set[int]) -> list[tuple[tuple[str, str], tuple[str, str] | None]]:
        """(pending, final or None) render paths of the batch's new files (see ``settle_renders``)."""
        return [(outcome.pending_renders,
                 (outcome.image["render_path"], outcome.image["thumb_path"]) if outcome.index in placed else None)
                for outcome in self.pending if outcome.pending_renders]

    def _write_images(self, session) -> None:
        # by task index: of duplicates in one batch the first by path wins, whatever order the workers finished in
        pending = sorted(self.pending, key=lambda outcome: outcome.index)
        study_ids = {o.study_id for o in pending if o.status == "added"}
        existing_studies = set(session.scalars(select(Study.id).where(Study.id.in_(study_ids))).all()) \
            if study_ids else set()
        # catalogued images whose own file was read again (not a recorded duplicate's): id -> first path read at
        read_again: dict[str, str] = {}
        for outcome in pending:
            if outcome.status == "existing" and outcome.content_hash not in self.duplicate_of:
                read_again.setdefault(outcome.image_id, self.tasks[outcome.index].path)
        images = {image.id: image for image in session.scalars(
            select(Image).where(Image.id.in_(list(read_again))))} if read_again else {}
        # backfills first: a new file of this batch is compared with the keys of rows catalogued before them
        backfilled = [image for outcome in pending if (image := self._backfill(outcome, images)) is not None]
        session.flush()
        known = CataloguedKeys(session, [*((o.pixel_hash, o.sop_pseudonym) for o in pending),
                                          *((image.pixel_hash, image.sop_pseudonym) for image in images.values())])
        for outcome in pending:
            task = self.tasks[outcome.index]
            if outcome.status == "added" and outcome.content_hash not in self.known_hashes:
                original = known.by_pixels.get(outcome.pixel_hash) if outcome.pixel_hash else None
                if original is not None:
                    self._add_duplicate(session, outcome, task, original)
                    continue
                resent = known.by_sop.get(outcome.sop_pseudonym) if outcome.sop_pseudonym else None
                if resent is not None:
                    self._warn_sop_conflict(session, outcome, task, resent)
                    continue
                columns = dict(outcome.image)
                if outcome.study_id not in existing_studies:
                    existing_studies.add(outcome.study_id)
                    session.add(Study(id=outcome.study_id, dataset=task.dataset,
                                      body_region=columns.get("body_region"), modality=columns.get("modality"),
                                      split=split_for_study(outcome.study_id)))
                    session.flush()  # no ORM relationships: flush the study before its image (foreign key)
                    self.summary.studies_added += 1
                meta = dict(columns.pop("meta", None) or {})
                if task.box_source and task.fracture_unknown:  # its set did not box every fracture
                    meta["unboxed_source"] = task.box_source
                    self.summary.images_unboxed_unknown += 1
                elif task.box_source:
                    meta["box_source"] = task.box_source
                session.add(Image(**columns, meta=meta))
                session.flush()  # the image before its boxes
                self.placed.add(outcome.index)
                self.known_hashes.add(outcome.content_hash)
                known.add(outcome.image_id, outcome.pixel_hash, outcome.sop_pseudonym, task.path)
                self.touched_studies.add(outcome.study_id)
                self.summary.images_added += 1
                if meta.get("burned_in_annotation"):
                    self._warn_burned_in(session, outcome.image_id, task.path)
                self._add_boxes(session, task, outcome.image_id, columns["width"], columns["height"], new=True)
                continue
            # Already catalogued (earlier run, or the same bytes twice in this run), as an image or a duplicate.
            self.summary.images_skipped_existing += 1
            image_id = self.duplicate_of.get(outcome.content_hash, outcome.image_id)
            if task.box_source:
                image = session.get(Image, image_id)
                if image is not None:
                    self.touched_studies.add(image.study_id)
                    self._attach_detection_source(image, task)
                    self._add_boxes(session, task, image.id, image.width, image.height, new=False)
        for outcome in pending:
            if outcome.status == "existing" and (outcome.render_restored or outcome.render_error):
                self._note_render(session, outcome, images.get(outcome.image_id))
        for image_id, path in read_again.items():
            image = images.get(image_id)
            if image is None:
                continue
            if (image.meta or {}).get("burned_in_annotation"):
                self._warn_burned_in(session, image.id, path)
            self._warn_if_twin(session, known, image.id, image.pixel_hash, image.sop_pseudonym, path)
        # a younger twin read before this row got its keys (an earlier batch) or not read in this run: warned now
        for image in backfilled:
            for twin in known.sharing_keys(image.id, image.pixel_hash, image.sop_pseudonym):
                self._warn_if_twin(session, known, twin.image_id, twin.pixel_hash, twin.sop_pseudonym,
                                   twin.source_path)

    def _backfill(self, outcome: ImageOutcome, images: dict[str, Image]) -> Image | None:
        """Give a row catalogued before pixel hashes (or the BurnedInAnnotation check) what its file says."""
        image = images.get(outcome.image_id) if outcome.status == "existing" and outcome.pixel_hash else None
        if image is None or image.pixel_hash is not None:
            return None
        image.pixel_hash, image.sop_pseudonym = outcome.pixel_hash, outcome.sop_pseudonym
        if outcome.burned_in_annotation:
            image.meta = {**(image.meta or {}), "burned_in_annotation": True}
        self.summary.pixel_hashes_backfilled += 1
        return image

    def _note_render(self, session, outcome: ImageOutcome, image: Image | None) -> None:
        """Count a render a worker made again (its size into the row, should it differ), or record why it could not
        be made (an error: the image stays catalogued without a usable render)."""
        path = self.tasks[outcome.index].path
        if outcome.render_error:
            reason = f"{outcome.image_id}: {outcome.render_error}"
            session.add(IngestError(run_id=self.summary.run_id, path=path, stage="render", reason=reason))
            self.summary.record_problem(path, "render", reason)
            return
        if outcome.image_id not in self.restored:  # the same file twice in a run: one image
            self.restored.add(outcome.image_id)
            self.summary.renders_restored += 1
        if image is not None and outcome.render_size and outcome.render_size != (image.render_width,
                                                                                 image.render_height):
            image.render_width, image.render_height = outcome.render_size

    def _warn_burned_in(self, session, image_id: str, path: str) -> None:
        if ("privacy", image_id) in self.warned:
            return
        self.warned.add(("privacy", image_id))
        reason = (f"{image_id}: BurnedInAnnotation YES (text in the pixels, possibly identifying): catalogued, but "
                  "kept out of active-learning rounds")
        session.add(IngestError(run_id=self.summary.run_id, path=path, stage="privacy", reason="warning: " + reason))
        self.summary.record_problem(path, "privacy", reason, warning=True)

    def _warn_if_twin(self, session, known: CataloguedKeys, image_id: str, pixel_hash: str | None,
                      sop_pseudonym: str | None, path: str) -> None:
        """Warn about a catalogued image that an older one duplicates (both catalogued before one had its keys)."""
        if ("duplicate", image_id) in self.warned:
            return
        twin = known.by_pixels.get(pixel_hash) if pixel_hash else None
        resent = known.by_sop.get(sop_pseudonym) if sop_pseudonym else None
        if twin is not None and twin.image_id != image_id:
            reason = f"same pixels as {twin.image_id} ({twin.source_path})"
        elif resent is not None and resent.image_id != image_id:
            reason = f"same DICOM SOPInstanceUID as {resent.image_id} ({resent.source_path}) but other pixels"
        else:
            return
        self.warned.add(("duplicate", image_id))
        reason = (f"{image_id}: {reason}; both stay, as one was catalogued before the other's duplicate keys were "
                  "known (remove one from the catalog by hand if they are the same image)")
        session.add(IngestError(run_id=self.summary.run_id, path=path, stage="duplicate",
                                reason="warning: " + reason))
        self.summary.record_problem(path, "duplicate", reason, warning=True)

    def _add_duplicate(self, session, outcome: ImageOutcome, task: ImageTask, original: Catalogued) -> None:
        """A new file with the pixels of ``original``: recorded as its duplicate source, not as an image."""
        session.add(DuplicateSource(image_id=original.image_id, content_hash=outcome.content_hash,
                                    source_path=task.path, source_format=outcome.image.get("source_format", ""),
                                    dataset=task.dataset, run_id=self.summary.run_id))
        self.known_hashes.add(outcome.content_hash)
        self.duplicate_of[outcome.content_hash] = original.image_id
        self.summary.images_skipped_duplicate += 1
        if len(self.summary.duplicate_samples) < DUPLICATE_SAMPLE_LIMIT:
            self.summary.duplicate_samples.append({"path": task.path, "duplicate_of": original.image_id,
                                                   "original_path": original.source_path})
        if task.box_source:
            image = session.get(Image, original.image_id)
            if image is not None:
                self.touched_studies.add(image.study_id)
                self._attach_detection_source(image, task)
                self._add_boxes(session, task, image.id, image.width, image.height, new=False)

    def _warn_sop_conflict(self, session, outcome: ImageOutcome, task: ImageTask, original: Catalogued) -> None:
        """Same SOPInstanceUID as ``original``, other pixels: the catalogued one stays, the new file is reported."""
        reason = (f"same DICOM SOPInstanceUID as {original.image_id} ({original.source_path}) but other pixels "
                  f"(a corrected re-send?): not ingested as {outcome.image_id}; {original.image_id}, ingested "
                  "first, is kept")
        session.add(IngestError(run_id=self.summary.run_id, path=task.path, stage="duplicate",
                                reason="warning: " + reason))
        self.summary.record_problem(task.path, "duplicate", reason, warning=True)
        self.summary.images_skipped_conflict += 1

    def _attach_detection_source(self, image: Image, task: ImageTask) -> None:
        """An image already catalogued (e.g. as a plain JPEG) now listed by a detection set.

        It becomes exhaustively boxed (``meta["box_source"]``) unless it is already, the set is ingested with
        ``unboxed="unknown"`` and has no fracture box for it, or an earlier run of this same set catalogued it
        with an unknown fracture label (``meta["unboxed_source"]``): the ``unboxed`` choice applies to the
        images a run adds, so a later run with the default does not turn them into negatives.
        """
        meta = dict(image.meta or {})
        keeps_unknown = meta.get("unboxed_source") == task.box_source and not has_fracture_box(task)
        if "box_source" not in meta and not task.fracture_unknown and not keeps_unknown:
            meta["box_source"] = task.box_source
            image.meta = meta
        if image.body_region is None and task.body_region:
            image.body_region = task.body_region

    def _add_boxes(self, session, task: ImageTask, image_id: str, width: int, height: int, *, new: bool) -> None:
        """Store the task's boxes on ``image_id`` unless this source's are there already (re-ingest).

        An image that already has boxes from another source (the same set in another format, a pixel-duplicate
        file's set, Label Studio) gets only the boxes that are not already there: a box with the vocabulary
        label of an existing box and :func:`radloop.core.boxes.same_box` geometry (IoU >= 0.9, or every edge
        within 2 px) is counted in ``boxes_skipped_duplicate`` instead, each existing box matching one new box
        at most.  (Vocabulary labels, not class names: exports of one set may name or number classes apart.)
        """
        if not task.boxes:
            return
        existing: list[Annotation] = []
        if not new:
            existing = list(session.scalars(select(Annotation).where(
                Annotation.image_id == image_id, Annotation.kind == "box")))
            if any(annotation.source == task.box_source for annotation in existing):
                return  # this source's boxes are already there (re-ingest)
        unmatched = [(a.label, (a.x, a.y, a.w, a.h)) for a in existing if None not in (a.x, a.y, a.w, a.h)]
        for box in task.boxes:
            x, y, w, h = box.to_pixels(width, height)
            label = box_label_for_class(box.source_label)
            twin = next((i for i, (other_label, other) in enumerate(unmatched)
                         if other_label == label and same_box((x, y, w, h), other)), None)
            if twin is not None:
                del unmatched[twin]
                self.summary.boxes_skipped_duplicate += 1
                continue
            session.add(Annotation(image_id=image_id, source=task.box_source, kind="box",
                                   label=label, source_label=box.source_label,
                                   x=x, y=y, w=w, h=h, meta={}))
            self.summary.annotations_added += 1


def _default_path(folder: str):
    """SQL for the path ingest gives an image's render (``folder`` renders) or thumbnail (thumbs):
    ``<folder>/<id[2:4]>/<id>.png``, as :func:`radloop.core.ingest_worker.render_relative_paths`."""
    return literal(f"{folder}/") + func.substr(Image.id, 3, 2) + "/" + Image.id + ".png"
