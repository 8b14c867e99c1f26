"""Store weak labels in the catalog (``weak_labels`` rows, one per mention, tagged with the rules' version)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Iterable, Iterator

from .checks import require_many
from .sources import assemble_text

if TYPE_CHECKING:  # the labeller (spaCy, medspaCy: ~500 MB) is imported only when a report needs labelling
    from .labeler import ReportLabeler


@dataclass(frozen=True)
class LabelRunSummary:
    """What ``label_catalog`` did."""

    rules_version: str
    reports_total: int
    reports_labelled: int
    reports_skipped: int
    mentions_written: int
    errors: int


class LabelRunInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``label_catalog``, raised once the reports labelled so far are committed; ``summary`` says
    how many (a rerun goes on from there)."""

    def __init__(self, summary: LabelRunSummary):
        super().__init__(f"interrupted after {summary.reports_labelled} report(s) labelled")
        self.summary = summary


def report_text(report) -> str | None:
    """A catalog report's text: ``Report.text``, else its sections joined as ``HEADER: body`` lines."""
    if report.text and report.text.strip():
        return report.text
    if report.sections:
        return assemble_text({str(key).upper(): str(value or "") for key, value in report.sections.items()})
    return report.text


#: ``Report.meta`` key: the rules versions that labelled the report and found nothing in it (such a report has no
#: ``weak_labels`` row to show it was labelled; without the mark every run would label it again).  An ingest that
#: changes the report's text replaces its meta and deletes its rows, so the next run labels it again.
EMPTY_KEY = "weak_labels_empty"
_END = object()


def _pages(catalog, columns: tuple, read, batch_size: int) -> Iterator[tuple[list, object]]:
    """Yield ``(page, read(session, page))`` for the catalog's reports in id-ordered pages of ``columns`` (the
    report id first), keyset-paged; ``read`` runs in the page's session, which is closed before the yield (no
    read transaction stays open while the caller labels or writes)."""
    from sqlalchemy import select

    from radloop.core.schema import Report

    last_id = ""
    while True:
        with catalog.session() as session:
            page = session.execute(select(*columns).where(Report.id > last_id)
                                   .order_by(Report.id).limit(batch_size)).all()
            if not page:
                return
            result = read(session, page)
        yield page, result
        last_id = page[-1][0]


def _labelled(version: str):
    """Column: whether the report has ``weak_labels`` rows of ``version`` (found through the
    ``(report_id, rules_version)`` index, schema 5)."""
    from sqlalchemy import select

    from radloop.core.schema import Report, WeakLabel

    return select(WeakLabel.id).where(WeakLabel.report_id == Report.id, WeakLabel.rules_version == version).exists()


def iter_catalog_reports(catalog, *, batch_size: int = 500) -> Iterator[tuple[str, str | None]]:
    """Yield ``(report_id, text)`` for every catalog report, reading in id-ordered pages."""
    from radloop.core.schema import Report

    for page, _ in _pages(catalog, (Report.id, Report.text, Report.sections), lambda session, page: None,
                          batch_size):
        for row in page:
            yield row.id, report_text(row)


def _reports_to_label(catalog, version: str, force: bool, counts: dict,
                      batch_size: int = 500) -> Iterator[tuple[str, str | None]]:
    """Yield ``(report_id, text)`` of the reports to label, in id order, a page at a time: those with no row of
    ``version`` and no :data:`EMPTY_KEY` mark of it (all with ``force``).  Only their texts are read, so a rerun
    with nothing to do reads ids alone; ``counts`` gets ``total`` and ``skipped``."""
    from sqlalchemy import select

    from radloop.core.schema import Report

    def read(session, page) -> dict[str, str | None]:
        ids = [report_id for report_id, has_rows in page if force or not has_rows]
        if ids and not force:  # those labelled before with nothing found
            marked = {report_id for report_id, meta in session.execute(
                select(Report.id, Report.meta).where(Report.id.in_(ids))) if version in (meta or {}).get(EMPTY_KEY, ())}
            ids = [report_id for report_id in ids if report_id not in marked]
        return {row.id: report_text(row) for row in session.execute(
            select(Report.id, Report.text, Report.sections).where(Report.id.in_(ids)))} if ids else {}

    for page, texts in _pages(catalog, (Report.id, _labelled(version)), read, batch_size):
        counts["total"] += len(page)
        counts["skipped"] += len(page) - len(texts)
        for report_id, _ in page:
            if report_id in texts:
                yield report_id, texts[report_id]


def count_to_label(catalog, version: str, *, force: bool = False) -> int:
    """How many reports :func:`label_catalog` with ``version`` has to label (a progress bar's total): all of them
    with ``force``, else those with no row of ``version`` and no :data:`EMPTY_KEY` mark of it.  One count through
    the ``(report_id, rules_version)`` index, then the meta of the reports without rows alone (on a rerun, the
    few in which nothing was found)."""
    from sqlalchemy import func, select

    from radloop.core.schema import Report

    with catalog.session() as session:
        if force:
            return session.scalar(select(func.count()).select_from(Report)) or 0
        without_rows = select(Report.meta).where(~_labelled(version))
        return sum(version not in (meta or {}).get(EMPTY_KEY, ())
                   for meta in session.scalars(without_rows.execution_options(yield_per=5000)))


def label_catalog(catalog, labeler: ReportLabeler | None = None, *, n_process: int = 1, force: bool = False,
                  commit_every: int = 1000, on_result=None) -> LabelRunSummary:
    """Label the catalog's reports and store ``WeakLabel`` rows under the labeller's ``rules_version``.

    Idempotent: reports labelled with this rules version before (rows, or the :data:`EMPTY_KEY` mark of a report
    in which nothing was found) are skipped (``force`` relabels them, replacing their rows).  Rows of other rules
    versions are kept, so versions can be compared.  Rows are written in batches of ``commit_every`` reports, one
    transaction each: an interrupted run keeps what it committed (Ctrl-C: every report labelled so far) and the
    next one goes on from there.

    Args:
        catalog: An open :class:`radloop.core.catalog.Catalog`.
        labeler: Defaults to a :class:`ReportLabeler` built only when a report needs labelling (seconds and
            hundreds of MB: a rerun with nothing to label does without).
        n_process: Worker processes.
        force: Relabel reports already labelled with this rules version.
        commit_every: Rows are committed in batches of this many reports.
        on_result: Optional callback ``(report_id, LabelResult)`` (e.g. to also write JSONL).
    """
    from sqlalchemy import delete, insert, select

    from radloop.core.catalog import chunked
    from radloop.core.schema import Report, WeakLabel

    from .rules_loader import rules_version

    version = labeler.rules_version if labeler is not None else rules_version()
    counts = {"total": 0, "skipped": 0}
    labelled = written = errors = 0
    todo: deque[str] = deque()  # ids of reports handed to the labeller, in order
    reports = _reports_to_label(catalog, version, force, counts)

    def texts() -> Iterator[str | None]:
        for report_id, text in reports:
            todo.append(report_id)
            yield text

    pending: list[tuple[str, object]] = []

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        ids = [report_id for report_id, _ in pending]
        rows = [{"report_id": report_id, "finding": mention.finding, "status": mention.status,
                 "temporality": mention.temporality, "site": mention.site, "laterality": mention.laterality,
                 "device_type": mention.device_type, "evidence": mention.evidence, "start": mention.start,
                 "end": mention.end, "section": mention.section, "rules_version": version}
                for report_id, result in pending for mention in result]
        empty = [report_id for report_id, result in pending if not len(result)]
        with catalog.session() as session:
            for part in chunked(ids):
                session.execute(delete(WeakLabel).where(WeakLabel.rules_version == version,
                                                        WeakLabel.report_id.in_(part)))
            for part in chunked(rows):
                session.execute(insert(WeakLabel), part)
            for part in chunked(empty):
                for report in session.scalars(select(Report).where(Report.id.in_(part))):
                    marks = list((report.meta or {}).get(EMPTY_KEY, ()))
                    if version not in marks:
                        report.meta = {**(report.meta or {}), EMPTY_KEY: [*marks, version]}
        written += len(rows)
        pending.clear()

    stream = texts()
    first = next(stream, _END)
    if first is not _END:  # something to label: only now build the labeller
        if labeler is None:
            from .labeler import ReportLabeler

            labeler = ReportLabeler()
        try:
            for result in labeler.label_many(chain([first], stream), n_process=n_process):
                report_id = todo.popleft()
                labelled += 1
                errors += result.error is not None
                if on_result is not None:
                    on_result(report_id, result)
                pending.append((report_id, result))
                if len(pending) >= commit_every:
                    flush()
        except KeyboardInterrupt as error:  # Ctrl-C: keep the reports labelled since the last commit too
            flush()
            raise LabelRunInterrupted(LabelRunSummary(version, counts["total"], labelled, counts["skipped"], written,
                                                      errors)) from error
        flush()
    return LabelRunSummary(version, counts["total"], labelled, counts["skipped"], written, errors)


def stored_mentions(catalog, rules_version: str, *, exclude: Iterable[str] = frozenset(),
                    batch_size: int = 500) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(report_id, findings)`` from the catalog's ``WeakLabel`` rows of ``rules_version`` (findings in
    the ``FindingMention.to_json`` layout, in stored order), report by report in id order, skipping ``exclude``;
    a report labelled with these rules in which nothing was found (:data:`EMPTY_KEY`) comes with an empty list.

    The rows hold no ConText modifiers (``mention_from_json`` turns an entry into a record with none).

    Raises:
        TypeError: ``exclude`` is one ``str`` (it would exclude every id that is a substring of it).
    """
    require_many(exclude, "exclude", "report ids", hint="wrap one id in a set")
    exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
    return _stored_mentions(catalog, rules_version, exclude, batch_size)


def _stored_mentions(catalog, rules_version: str, exclude: set[str],
                     batch_size: int) -> Iterator[tuple[str, list[dict]]]:
    from sqlalchemy import select

    from radloop.core.schema import Report, WeakLabel

    columns = ("finding", "status", "temporality", "site", "laterality", "device_type", "evidence", "start", "end",
               "section")

    def read(session, page) -> dict[str, list[dict]]:
        with_rows = [report_id for report_id, has_rows in page if has_rows and report_id not in exclude]
        grouped: dict[str, list[dict]] = {report_id: [] for report_id in with_rows}
        if with_rows:
            for row in session.execute(select(WeakLabel.report_id, *(getattr(WeakLabel, name) for name in columns))
                                       .where(WeakLabel.rules_version == rules_version,
                                              WeakLabel.report_id.in_(with_rows))
                                       .order_by(WeakLabel.report_id, WeakLabel.id)):
                grouped[row[0]].append(dict(zip(columns, row[1:])))
        others = [report_id for report_id, _ in page if report_id not in exclude and report_id not in grouped]
        if others:  # labelled with nothing found (EMPTY_KEY), or not labelled with these rules
            for report_id, meta in session.execute(select(Report.id, Report.meta).where(Report.id.in_(others))):
                if rules_version in (meta or {}).get(EMPTY_KEY, ()):
                    grouped[report_id] = []
        return grouped

    for page, grouped in _pages(catalog, (Report.id, _labelled(rules_version)), read, batch_size):
        for report_id, _ in page:
            if report_id in grouped:
                yield report_id, grouped[report_id]
