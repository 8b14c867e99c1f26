"""What one ingest run did (:class:`IngestSummary`), and the interrupt that carries it (:class:`IngestInterrupted`).

The summary counts what is committed: :class:`radloop.core.ingest_writer.CatalogWriter` takes back the counts of
a batch that was rolled back, so an interrupted run's summary says what a re-run will find catalogued.  It is
written to ``<workspace>/logs/ingest-<run_id>.json`` at the end of every run, an interrupted one included.
A commit and what depends on knowing it happened run under :func:`interrupt_deferred`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

__all__ = ["ERROR_SAMPLE_LIMIT", "IngestInterrupted", "IngestSummary", "interrupt_deferred"]

ERROR_SAMPLE_LIMIT = 20


@dataclass
class IngestSummary:
    """What one ingest run did.  ``errors`` counts failures (files/reports not ingested)."""

    run_id: str
    images_found: int = 0
    images_added: int = 0
    images_skipped_existing: int = 0
    #: new files whose pixels are an image already catalogued (or added earlier in the run): not added; each
    #: is in the ``duplicate_sources`` table (the first ones also in ``duplicate_samples``)
    images_skipped_duplicate: int = 0
    #: new DICOM files with a catalogued image's SOPInstanceUID but other pixels: not added, one warning each
    images_skipped_conflict: int = 0
    #: catalogued images without a pixel hash (ingested before it existed) that got it from this run
    pixel_hashes_backfilled: int = 0
    #: catalogued images whose render or thumbnail was missing or damaged, made again from their file (read in
    #: this run; ids, hashes and boxes unchanged)
    renders_restored: int = 0
    #: images of this run's datasets with a missing or damaged render whose file was not read in this run (gone,
    #: changed since, or not among the inputs): not restored, one warning each (stage ``render``)
    renders_not_restored: int = 0
    studies_added: int = 0
    annotations_added: int = 0
    #: boxes not stored because the image already had the same box from another source (counted again by a
    #: re-run of that source, which stores nothing either)
    boxes_skipped_duplicate: int = 0
    #: images this run added from a detection set without a fracture box, with ``unboxed="unknown"``: their
    #: fracture label stays unknown instead of "no fracture" (``meta["unboxed_source"]``)
    images_unboxed_unknown: int = 0
    reports_added: int = 0
    reports_updated: int = 0
    reports_skipped_existing: int = 0
    #: reports of this run given a study through the images they name (when written, or later in the run)
    reports_linked: int = 0
    errors: int = 0
    warnings: int = 0
    files_ignored: int = 0
    #: DICOM objects of a class that holds no image (structured report, presentation state, encapsulated PDF):
    #: skipped, one warning each (stage ``skip``), again in every run that reads them
    files_not_images: int = 0
    workers: int = 1
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    #: CPU seconds summed over images (worker stages: read, hash, decode incl. windowing, render, and
    #: render_check: the renders of catalogued images looked at) and the main process's catalog writes
    #: ("catalog"): where an ingest spends its CPU.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error_samples: list[dict] = field(default_factory=list)
    #: ``{"path", "duplicate_of", "original_path"}`` of the first duplicates found
    duplicate_samples: list[dict] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    #: the run was stopped (Ctrl-C, SIGINT) before it finished: its counts are those of the batches written
    interrupted: bool = False

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


class IngestInterrupted(KeyboardInterrupt):
    """An ingest stopped by Ctrl-C (SIGINT); ``summary`` counts what it wrote before (its log is written too).

    Every batch written is committed and the one in hand is not, so a re-run of the same inputs adds the rest.
    """

    def __init__(self, summary: IngestSummary) -> None:
        super().__init__(summary.run_id)
        self.summary = summary


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives in the block until the block is done, then raise it.

    A batch's commit and what follows from it (its counts kept, its renders put in place) are one step: a
    KeyboardInterrupt landing between the database's COMMIT and the code that knows of it took back the counts
    of a committed batch (and would delete its renders).  Only the main thread receives KeyboardInterrupt, so
    elsewhere the block just runs.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # not the main thread, or a handler not set from Python (it could not be put back)
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt
