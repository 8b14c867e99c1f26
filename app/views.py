"""Read-only queries behind the Streamlit app: pure functions over the catalog, no Streamlit.

Every page of ``app/main.py`` only renders what these functions return (dataclasses and pandas
DataFrames), so the queries are testable without a browser and the UI holds no business logic.
Case search, report highlighting, round history / selection queue and round control live in
:mod:`radloop.app.views_search`, :mod:`radloop.app.views_reports`, :mod:`radloop.app.views_rounds` and
:mod:`radloop.app.views_control`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import distinct, func, literal_column, select

from radloop.app import next_steps
from radloop.core.catalog import Catalog
from radloop.core.records import Box
from radloop.core.schema import Image, Model, Report, Study, WeakLabel
from radloop.core.workspace import Workspace

__all__ = [
    "NEXT_STEP_EMPTY", "UNKNOWN_REGION", "Coverage", "CaseCard", "open_catalog", "region_counts", "finding_counts",
    "weak_label_coverage", "list_cases", "case_cards", "models_frame", "text_or",
]

#: What to do in a workspace without a catalog or without images.
NEXT_STEP_EMPTY = next_steps.EMPTY_WORKSPACE


#: How the app names a missing body region.
UNKNOWN_REGION = "unknown"


def text_or(value: object, default: str) -> str:
    """``value`` when it is a non-empty string, else ``default``: a missing value read back from a DataFrame row
    is NaN under pandas 3 (a truthy float that prints "nan"), not None."""
    return value if isinstance(value, str) and value else default


def open_catalog(workspace: Workspace) -> Catalog:
    """Open an existing catalog without creating a new one.

    Raises:
        FileNotFoundError: the workspace has no catalog yet (message says what to run).
    """
    return Catalog.open(workspace, create=False)


def region_counts(catalog: Catalog) -> pd.DataFrame:
    """Images and studies per body region (``unknown`` for images without one), largest first; computed again
    only when the catalog changed (:meth:`radloop.core.catalog.Catalog.cached`: it scans every image).

    Returns:
        DataFrame with columns ``body_region, images, studies``.
    """
    return catalog.cached("views.region_counts", lambda: _region_counts(catalog)).copy()


def _region_counts(catalog: Catalog) -> pd.DataFrame:
    # null and "" are both unknown (as in `radloop info` and the search filter): one row, each study once
    # (inline constants: PostgreSQL matches the GROUP BY expression to the SELECT one only without parameters)
    region = func.coalesce(func.nullif(Image.body_region, literal_column("''")), literal_column(f"'{UNKNOWN_REGION}'"))
    with catalog.session() as session:
        rows = session.execute(
            select(region, func.count(Image.id), func.count(distinct(Image.study_id))).group_by(region)).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=["body_region", "images", "studies"])
    return frame.sort_values(["images", "body_region"], ascending=[False, True], ignore_index=True)


def finding_counts(catalog: Catalog) -> pd.DataFrame:
    """Per finding: reports with a positive / negative / uncertain weak mention, and expert-labelled images.

    A report counts once per (finding, status) even when it mentions the finding several times.  Expert
    counts are images whose training target (:func:`radloop.core.targets.image_targets`: boxes of an
    exhaustively annotated set, then the newest image-level answer) says present / absent.

    Returns:
        DataFrame with columns ``finding, positive, negative, uncertain, expert_positive, expert_negative``,
        sorted by the number of positive reports.  Computed again only when the catalog changed (it scans every
        weak label).
    """
    return catalog.cached("views.finding_counts", lambda: _finding_counts(catalog)).copy()


def _finding_counts(catalog: Catalog) -> pd.DataFrame:
    from radloop.core.targets import image_labels

    table: dict[str, Counter] = defaultdict(Counter)
    with catalog.session() as session:
        for finding, status, reports in session.execute(
                select(WeakLabel.finding, WeakLabel.status, func.count(distinct(WeakLabel.report_id)))
                .group_by(WeakLabel.finding, WeakLabel.status)):
            table[finding][status] += reports
    for labels in image_labels(catalog).values():  # only labelled images are read (the archive may hold 1M)
        for finding, value in labels.items():
            table[finding]["expert_positive" if value else "expert_negative"] += 1
    columns = ["finding", "positive", "negative", "uncertain", "expert_positive", "expert_negative"]
    frame = pd.DataFrame([(finding, *(counts[name] for name in columns[1:])) for finding, counts in table.items()],
                         columns=columns)
    return frame.sort_values(["positive", "expert_positive", "finding"], ascending=[False, False, True],
                             ignore_index=True)


@dataclass(frozen=True)
class Coverage:
    """How much of the archive the report rules have labelled."""

    reports: int
    reports_labelled: int
    images: int
    images_with_report: int
    images_labelled: int
    rules_versions: tuple[str, ...]

    @property
    def report_fraction(self) -> float:
        """Share of reports that went through the labeller (0 when there are none)."""
        return self.reports_labelled / self.reports if self.reports else 0.0

    @property
    def image_fraction(self) -> float:
        """Share of images whose study has a labelled report."""
        return self.images_labelled / self.images if self.images else 0.0


def weak_label_coverage(catalog: Catalog) -> Coverage:
    """Reports with at least one weak label, and images whose study has such a report.

    A report without any mention (e.g. a very short normal report) counts as not labelled: the rules found
    nothing to say about it.  Computed again only when the catalog changed (it scans every weak label).
    """
    return catalog.cached("views.weak_label_coverage", lambda: _weak_label_coverage(catalog))


def _weak_label_coverage(catalog: Catalog) -> Coverage:
    with catalog.session() as session:
        reports = session.scalar(select(func.count(Report.id))) or 0
        labelled = session.scalar(select(func.count(distinct(WeakLabel.report_id)))) or 0
        images = session.scalar(select(func.count(Image.id))) or 0
        reported_studies = select(Report.study_id).where(Report.study_id.is_not(None))
        with_report = session.scalar(
            select(func.count(Image.id)).where(Image.study_id.in_(reported_studies))) or 0
        labelled_studies = (select(Report.study_id).join(WeakLabel, WeakLabel.report_id == Report.id)
                            .where(Report.study_id.is_not(None)))
        images_labelled = session.scalar(
            select(func.count(Image.id)).where(Image.study_id.in_(labelled_studies))) or 0
        versions = tuple(sorted(session.scalars(select(WeakLabel.rules_version).distinct()).all()))
    return Coverage(reports=reports, reports_labelled=labelled, images=images, images_with_report=with_report,
                    images_labelled=images_labelled, rules_versions=versions)


def list_cases(catalog: Catalog, *, body_region: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Images to pick a query case from, newest first.

    ``body_region="unknown"`` selects the images without a region (the name :func:`region_counts` gives them).

    Returns:
        DataFrame with columns ``image_id, study_id, body_region, split, dataset, external_id``.
    """
    with catalog.session() as session:
        query = (select(Image.id, Image.study_id, Image.body_region, Study.split, Image.dataset,
                        Image.external_id).join(Study, Study.id == Image.study_id))
        if body_region == UNKNOWN_REGION:
            query = query.where(Image.body_region.is_(None) | (Image.body_region == ""))
        elif body_region:
            query = query.where(Image.body_region == body_region)
        rows = session.execute(query.order_by(Image.created_at.desc(), Image.id).limit(limit)).all()
    return pd.DataFrame([tuple(row) for row in rows],
                        columns=["image_id", "study_id", "body_region", "split", "dataset", "external_id"])


@dataclass(frozen=True)
class CaseCard:
    """What a grid tile shows about one image.

    ``thumb`` is an absolute path (None when the file is missing); ``expert_labels`` maps finding -> 1/0
    from annotations; ``weak_labels`` maps finding -> status from its study's reports.  ``boxes`` are the
    image's finding boxes in original pixels, ``width`` x ``height`` its original size (to scale them).
    """

    image_id: str
    study_id: str
    body_region: str | None
    split: str | None
    thumb: Path | None
    expert_labels: dict[str, int]
    weak_labels: dict[str, str]
    report_id: str | None
    report_snippet: str
    distance: float | None = None
    boxes: tuple[Box, ...] = ()
    width: int | None = None
    height: int | None = None

    @property
    def label_summary(self) -> str:
        """One line: expert labels first, then weak labels (``finding?`` for uncertain, ``no finding``)."""
        parts = [f"{finding}={value}" for finding, value in sorted(self.expert_labels.items())]
        for finding, status in sorted(self.weak_labels.items()):
            parts.append({"positive": finding, "negative": f"no {finding}"}.get(status, f"{finding}?"))
        return ", ".join(parts) if parts else "no labels"


#: When a report mentions a finding several times, which status the card shows.
_STATUS_PRIORITY = {"positive": 3, "uncertain": 2, "negative": 1}


def _snippet(report: Report | None, length: int) -> str:
    if report is None:
        return ""
    sections = report.sections or {}
    text = " ".join(str(sections[name]) for name in ("FINDINGS", "IMPRESSION") if sections.get(name)) or report.text
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length - 1].rstrip() + "…"


def case_cards(catalog: Catalog, image_ids: list[str], *, distances: list[float] | None = None,
               snippet_length: int = 160) -> list[CaseCard]:
    """Grid tiles for ``image_ids`` in the given order (unknown ids are skipped).

    Args:
        catalog: the catalog.
        image_ids: images to show.
        distances: optional distance of each image to a query, same order as ``image_ids``.
        snippet_length: maximum characters of report text per tile.
    """
    from radloop.core.targets import image_targets

    distance_of = dict(zip(image_ids, distances, strict=True)) if distances is not None else {}
    targets = {target.image_id: target for target in image_targets(catalog, image_ids=list(image_ids))}
    with catalog.session() as session:
        images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(image_ids)))}
        study_ids = {image.study_id for image in images.values()}
        reports: dict[str, Report] = {}
        for report in session.scalars(select(Report).where(Report.study_id.in_(study_ids)).order_by(Report.id)):
            reports.setdefault(report.study_id, report)
        weak: dict[str, dict[str, str]] = defaultdict(dict)
        report_ids = [report.id for report in reports.values()]
        for label in session.scalars(select(WeakLabel).where(WeakLabel.report_id.in_(report_ids))):
            current = weak[label.report_id].get(label.finding)
            if current is None or _STATUS_PRIORITY.get(label.status, 0) > _STATUS_PRIORITY.get(current, 0):
                weak[label.report_id][label.finding] = label.status
    cards = []
    for image_id in image_ids:
        image = images.get(image_id)
        if image is None:
            continue
        thumb = catalog.workspace.absolute(image.thumb_path) if image.thumb_path else None
        report = reports.get(image.study_id)
        target = targets.get(image_id)
        cards.append(CaseCard(
            image_id=image_id, study_id=image.study_id, body_region=image.body_region,
            split=target.split if target else None,
            thumb=thumb if thumb is not None and thumb.is_file() else None,
            expert_labels=dict(target.labels) if target else {},
            weak_labels=dict(weak.get(report.id, {})) if report else {},
            report_id=report.id if report else None, report_snippet=_snippet(report, snippet_length),
            distance=distance_of.get(image_id), boxes=target.boxes if target else (),
            width=image.width, height=image.height))
    return cards


def models_frame(catalog: Catalog, task: str | None = None) -> pd.DataFrame:
    """The model registry, newest first, with every numeric metric as its own ``metric:<name>`` column.

    Returns:
        DataFrame with columns ``version, kind, task, current``, the metric columns (sorted by name), then
        ``labels, parent_version, created_at, path``.
    """
    with catalog.session() as session:
        query = select(Model).order_by(Model.created_at.desc(), Model.version)
        if task:
            query = query.where(Model.task == task)
        models = session.scalars(query).all()
    rows = []
    for model in models:
        row = {"version": model.version, "kind": model.kind, "task": model.task, "current": bool(model.is_current),
               "parent_version": model.parent_version, "labels": len(model.annotation_ids or []),
               "created_at": model.created_at, "path": model.path}
        for name, value in _flat_metrics(model.metrics or {}).items():
            row[f"metric:{name}"] = value
        rows.append(row)
    head, tail = ["version", "kind", "task", "current"], ["labels", "parent_version", "created_at", "path"]
    frame = pd.DataFrame(rows, columns=None if rows else head + tail)
    metric_columns = sorted(column for column in frame.columns if column.startswith("metric:"))
    return frame[head + metric_columns + tail]


def _flat_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, f"{prefix}{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{name}"] = float(value)
    return flat
