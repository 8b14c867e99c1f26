"""Typed records of the Label Studio adapter: what radloop sees of images, tasks and annotations.

Split from :mod:`radloop.labeling.ls_adapter`, which converts Label Studio JSON into (and out of) these
frozen records and re-exports them; import them from there.  Label Studio's ML-backend requests have their
records in :mod:`radloop.labeling.ls_backend_requests`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from radloop.core.records import Box

__all__ = ["AdapterError", "AnnotationVersion", "ImageGeometry", "LSTask", "PredictionRecord", "ResultProblem",
           "TaskData", "task_key"]


class AdapterError(ValueError):
    """Label Studio JSON that cannot be read at all (the message says what is wrong)."""


@dataclass(frozen=True)
class ImageGeometry:
    """Original pixel size of an image and the size of the render Label Studio displays."""

    width: int
    height: int
    render_width: int
    render_height: int


@dataclass(frozen=True)
class TaskData:
    """What a radloop task shows: pseudonymous ids only (no file names, no DICOM header, no patient id)."""

    case_id: str
    study_id: str
    image_url: str
    report: str
    body_region: str
    strategy: str
    selection_score: float | None
    round_number: int
    round_id: int

    @property
    def key(self) -> str:
        """Idempotency key of a task: one task per (case, round)."""
        return task_key(self.case_id, self.round_id)


def task_key(case_id: str, round_id: int) -> str:
    return f"{case_id}@round-{round_id}"


@dataclass(frozen=True)
class PredictionRecord:
    """A model's (or the report rules') pre-annotation of one image.

    Attributes:
        choices: finding -> probability (only findings of the project's Choices are sent).
        boxes: boxes in original pixels with ``score``.
        threshold: findings with probability >= threshold are pre-ticked.
        uncertain: findings the source cannot call (a report's "possible fracture"): never pre-ticked as
            present; pre-ticked under "Cannot tell" where the project has that control.
    """

    model_version: str
    choices: dict[str, float]
    boxes: tuple[Box, ...] = ()
    threshold: float = 0.5
    uncertain: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResultProblem:
    """One annotation result that could not be converted, with the reason and the raw result."""

    reason: str
    raw: dict


@dataclass(frozen=True)
class AnnotationVersion:
    """One version (``updated_at``) of one Label Studio annotation, converted.

    Attributes:
        choices: finding -> 1/0 for every finding the project's Choices list, None for a finding the
            annotator ticked under "Cannot tell" (empty when cancelled).
        boxes: boxes in original-image pixels.
        problems: results to quarantine.  notes: non-fatal remarks (e.g. a box clipped to the image).
    """

    annotation_id: int
    task_id: int
    annotator_id: int | None
    created_at: datetime
    updated_at: datetime
    cancelled: bool
    ground_truth: bool
    choices: dict[str, int | None]
    boxes: tuple[Box, ...]
    comment: str | None
    problems: tuple[ResultProblem, ...] = ()
    notes: tuple[str, ...] = ()
    lead_time: float | None = None

    @property
    def version_stamp(self) -> str:
        return self.updated_at.isoformat()


@dataclass(frozen=True)
class LSTask:
    """A Label Studio task as radloop sees it."""

    task_id: int
    case_id: str | None
    round_id: int | None
    key: str | None
    updated_at: datetime | None
    annotations: tuple[AnnotationVersion, ...] = ()
    problems: tuple[ResultProblem, ...] = ()
