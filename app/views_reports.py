"""Report explorer queries: report lists, stored weak labels, live ConText mentions, highlight segments."""

from __future__ import annotations

import html
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd
from sqlalchemy import distinct, func, select

from radloop.app import next_steps
from radloop.core.catalog import Catalog
from radloop.core.records import FindingMention
from radloop.core.schema import Image, Report, WeakLabel

__all__ = ["ReportDetail", "Segment", "list_reports", "count_reports", "mention_summary", "report_detail",
           "stored_mentions", "live_mentions", "mentions_frame", "highlight_segments", "load_labeler",
           "labeler_build",
           "weak_label_total", "highlight_html", "STATUS_COLOURS", "NEXT_STEP_LABELER", "NEXT_STEP_WEAK"]

logger = logging.getLogger(__name__)

#: Background colour of a highlighted mention per status (colour-blind-safe pairs, dark text).
STATUS_COLOURS = {"positive": "#f4a582", "negative": "#92c5de", "uncertain": "#fddbc7"}
NEXT_STEP_LABELER = next_steps.NO_LABELER
NEXT_STEP_WEAK = next_steps.NO_WEAK_LABELS


def _report_filter(query, *, finding: str | None, status: str | None, text: str | None):
    if finding:
        matching = select(WeakLabel.report_id).where(WeakLabel.finding == finding)
        if status:
            matching = matching.where(WeakLabel.status == status)
        query = query.where(Report.id.in_(matching))
    if text:
        query = query.where(func.lower(Report.text).contains(text.lower(), autoescape=True))  # % and _ literal
    return query


#: When a report mentions a finding several times, which status its one-line summary shows.
_STATUS_RANK = {"positive": 3, "uncertain": 2, "negative": 1}


def mention_summary(statuses: dict[str, str]) -> str:
    """One line per report for a picker: positive findings, then ``finding?`` (uncertain), then ``no finding``
    (negated; ``not normal``), so that a report that only rules findings out does not read as if it had them."""
    by_status = {status: sorted(name for name, value in statuses.items() if value == status)
                 for status in ("positive", "uncertain", "negative")}
    parts = by_status["positive"] + [f"{name}?" for name in by_status["uncertain"]]
    parts += [f"not {name}" if name == "normal" else f"no {name}" for name in by_status["negative"]]
    return ", ".join(parts)


def count_reports(catalog: Catalog, *, finding: str | None = None, status: str | None = None,
                  text: str | None = None) -> int:
    """How many reports match the filters of :func:`list_reports`."""
    with catalog.session() as session:
        query = _report_filter(select(func.count(Report.id)), finding=finding, status=status, text=text)
        return session.scalar(query) or 0


def list_reports(catalog: Catalog, *, finding: str | None = None, status: str | None = None,
                 text: str | None = None, limit: int = 200, offset: int = 0, with_dates: bool = False) -> pd.DataFrame:
    """Reports matching the filters, by id (``offset`` / ``limit``: one page of them).

    Args:
        catalog: the catalog.
        finding: keep reports with a stored weak label of this finding.
        status: with ``finding``, keep only mentions of this status.
        text: case-insensitive substring of the report text.
        limit: maximum rows.
        offset: matching reports to skip first.
        with_dates: add the ``report_date`` column (after ``study_id``).

    Returns:
        DataFrame with columns ``report_id, study_id[, report_date], mentions, findings, summary``
        (``report_date`` an ISO date or "" when the source gave none; ``findings`` a comma list of the findings
        mentioned, whatever their status; ``summary`` the same with the status, see :func:`mention_summary`).
    """
    with catalog.session() as session:
        query = _report_filter(select(Report.id, Report.study_id, Report.report_date), finding=finding,
                               status=status, text=text)
        rows = session.execute(query.order_by(Report.id).offset(offset).limit(limit)).all()
        report_ids = [report_id for report_id, _, _ in rows]
        statuses: dict[str, dict[str, str]] = {}
        counts: dict[str, int] = {}
        for report_id, label_finding, label_status, mentions in session.execute(
                select(WeakLabel.report_id, WeakLabel.finding, WeakLabel.status, func.count(WeakLabel.id))
                .where(WeakLabel.report_id.in_(report_ids))
                .group_by(WeakLabel.report_id, WeakLabel.finding, WeakLabel.status)):
            found = statuses.setdefault(report_id, {})
            current = found.get(label_finding)
            if current is None or _STATUS_RANK.get(label_status, 0) > _STATUS_RANK.get(current, 0):
                found[label_finding] = label_status
            counts[report_id] = counts.get(report_id, 0) + mentions
    frame = pd.DataFrame([(report_id, study_id, counts.get(report_id, 0),
                           ", ".join(sorted(statuses.get(report_id, {}))), mention_summary(statuses.get(report_id, {})))
                          for report_id, study_id, _ in rows],
                         columns=["report_id", "study_id", "mentions", "findings", "summary"])
    if with_dates:
        frame.insert(2, "report_date", [when.isoformat() if when else "" for _, _, when in rows])
    return frame


@dataclass(frozen=True)
class ReportDetail:
    """One report with its stored weak labels and the images of its study."""

    report_id: str
    study_id: str | None
    text: str
    sections: dict[str, str]
    expert_codes: list[str]
    image_ids: list[str]
    stored: list[FindingMention]
    rules_versions: tuple[str, ...]
    report_date: str = ""  # ISO date, "" when the source gave none


def stored_mentions(catalog: Catalog, report_id: str) -> tuple[list[FindingMention], tuple[str, ...]]:
    """The ``WeakLabel`` rows of a report as mentions (by offset), and the rule versions that made them."""
    with catalog.session() as session:
        rows = session.scalars(select(WeakLabel).where(WeakLabel.report_id == report_id)
                               .order_by(WeakLabel.start, WeakLabel.id)).all()
    mentions = [FindingMention(finding=row.finding, status=row.status, temporality=row.temporality, site=row.site,
                               laterality=row.laterality, device_type=row.device_type, evidence=row.evidence,
                               start=row.start, end=row.end, section=row.section) for row in rows]
    return mentions, tuple(sorted({row.rules_version for row in rows}))


def report_detail(catalog: Catalog, report_id: str) -> ReportDetail | None:
    """A report and its stored labels, or None when the id is unknown."""
    with catalog.session() as session:
        report = session.get(Report, report_id)
        if report is None:
            return None
        image_ids = (list(session.scalars(select(Image.id).where(Image.study_id == report.study_id)
                                          .order_by(Image.id)))
                     if report.study_id else [])
    mentions, versions = stored_mentions(catalog, report_id)
    return ReportDetail(report_id=report.id, study_id=report.study_id, text=report.text,
                        sections=dict(report.sections or {}), expert_codes=list(report.expert_codes or []),
                        image_ids=image_ids, stored=mentions, rules_versions=versions,
                        report_date=report.report_date.isoformat() if report.report_date else "")


def weak_label_total(catalog: Catalog) -> int:
    """Number of reports with stored weak labels."""
    with catalog.session() as session:
        return session.scalar(select(func.count(distinct(WeakLabel.report_id)))) or 0


def load_labeler() -> Any | None:
    """A :class:`radloop.labeling.ReportLabeler` (slow: builds the medspacy pipeline), or None when absent."""
    try:
        from radloop.labeling import ReportLabeler
    except ImportError:
        return None
    return ReportLabeler()


_builds: dict[Callable[[], Any], Future] = {}
_builds_lock = threading.Lock()


def labeler_build() -> Future:
    """The build of the report labeller (:func:`load_labeler`), started in a background thread on the first call
    of this server process (``app/main.py`` calls it on start); later calls return the same future.

    Its ``result()`` is the labeller or None, or raises the build's error (logged once here).  Keyed by the
    loader, so a stand-in ``load_labeler`` (tests) gets its own build.
    """
    loader = load_labeler
    with _builds_lock:
        build = _builds.get(loader)
        if build is None:
            # spaCy imports torch: torch imported by two threads at once (the build, and a page that embeds a
            # query) can leave one with a half-initialised torch ("operator prims::fmod does not exist"), so it is
            # imported here, in the calling thread, before the build thread starts (once per server process)
            import torch  # noqa: F401

            build = _builds[loader] = Future()
            threading.Thread(target=_build, args=(loader, build), name="radloop-labeler-build", daemon=True).start()
    return build


def _build(loader: Callable[[], Any], build: Future) -> None:
    try:
        build.set_result(loader())
    except BaseException as error:  # the page shows the stored labels and says why
        logger.exception("the report labeller could not be built; the Report explorer shows stored weak labels")
        build.set_exception(error)


def live_mentions(labeler: Any, text: str) -> tuple[list[FindingMention], str | None]:
    """Run the report labeller on ``text``: mentions (with ConText modifiers) by offset, and its error if any.

    Report-level mentions without offsets (e.g. an implied ``normal``) come first.
    """
    result = labeler.label(text)
    mentions = sorted(result, key=lambda mention: (mention.start if mention.start is not None else -1))
    return mentions, getattr(result, "error", None)


def mentions_frame(mentions: Iterable[FindingMention]) -> pd.DataFrame:
    """One row per mention: what was found, its status, its modifiers and where it is in the text."""
    rows = [(mention.finding, mention.status, mention.temporality, mention.site, mention.laterality,
             mention.device_type, ", ".join(mention.modifiers), mention.section, mention.evidence, mention.start,
             mention.end) for mention in mentions]
    return pd.DataFrame(rows, columns=["finding", "status", "temporality", "site", "laterality", "device_type",
                                       "modifiers", "section", "evidence", "start", "end"])


@dataclass(frozen=True)
class Segment:
    """A run of report text; ``mention`` is the mention it belongs to (None for plain text)."""

    text: str
    mention: FindingMention | None = None


def highlight_segments(text: str, mentions: Iterable[FindingMention]) -> list[Segment]:
    """Cut ``text`` into plain and mention segments, in order.

    Mentions without valid offsets are skipped; when two mentions overlap, the earlier-starting (then longer)
    one is highlighted and the other is only listed in the table.
    """
    spans = sorted(((mention.start, mention.end, mention) for mention in mentions
                    if mention.start is not None and mention.end is not None
                    and 0 <= mention.start < mention.end <= len(text)),
                   key=lambda span: (span[0], -span[1]))
    segments, cursor = [], 0
    for start, end, mention in spans:
        if start < cursor:
            continue
        if start > cursor:
            segments.append(Segment(text[cursor:start]))
        segments.append(Segment(text[start:end], mention))
        cursor = end
    if cursor < len(text):
        segments.append(Segment(text[cursor:]))
    return segments


def highlight_html(segments: Iterable[Segment]) -> str:
    """HTML for the segments: mentions as ``<mark>`` coloured by status with the details as tooltip."""
    parts = []
    for segment in segments:
        escaped = html.escape(segment.text)
        mention = segment.mention
        if mention is None:
            parts.append(escaped)
            continue
        details = [mention.finding, mention.status]
        details += [value for value in (mention.temporality if mention.temporality != "unspecified" else None,
                                        mention.site, mention.laterality, mention.device_type) if value]
        details += list(mention.modifiers)
        colour = STATUS_COLOURS.get(mention.status, "#e0e0e0")
        parts.append(f'<mark class="radloop-mention radloop-{html.escape(mention.status)}" '
                     f'style="background:{colour};color:#111;padding:0 2px;border-radius:3px" '
                     f'title="{html.escape(" | ".join(details))}">{escaped}'
                     f'<sub style="font-size:0.65em"> {html.escape(mention.finding)}:{html.escape(mention.status)}'
                     f'</sub></mark>')
    body = "".join(parts).replace("\n", "<br>")
    return f'<div class="radloop-report" style="line-height:1.8;white-space:normal">{body}</div>'
