"""Store weak labels in the catalog (``weak_labels`` rows, one per mention, tagged with the rules' version)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

from .checks import require_many
from .labeler import ReportLabeler
from .sources import assemble_text


@dataclass(frozen=True)
class LabelRunSummary:
    """What ``label_catalog`` did."""

    rules_version: str
    reports_total: int
    reports_labelled: int
    reports_skipped: int
    mentions_written: int
    errors: int


def report_text(report) -> str | None:
    """A catalog report's text: ``Report.text``, else its sections joined as ``HEADER: body`` lines."""
    if report.text and report.text.strip():
        return report.text
    if report.sections:
        return assemble_text({str(key).upper(): str(value or "") for key, value in report.sections.items()})
    return report.text


def iter_catalog_reports(catalog, *, batch_size: int = 500) -> Iterator[tuple[str, str | None]]:
    """Yield ``(report_id, text)`` for every catalog report, reading in id-ordered pages."""
    from sqlalchemy import select

    from radloop.core.schema import Report

    last_id = ""
    while True:
        with catalog.session() as session:
            rows = session.execute(select(Report).where(Report.id > last_id).order_by(Report.id).limit(batch_size)).scalars().all()
            page = [(row.id, report_text(row)) for row in rows]
        if not page:
            return
        yield from page
        last_id = page[-1][0]


def label_catalog(catalog, labeler: ReportLabeler | None = None, *, n_process: int = 1, force: bool = False,
                  commit_every: int = 1000, on_result=None) -> LabelRunSummary:
    """Label the catalog's reports and store ``WeakLabel`` rows under the labeller's ``rules_version``.

    Idempotent: reports that already have rows for this rules version are skipped (``force`` relabels
    them, replacing their rows).  Rows of other rules versions are kept, so versions can be compared.

    Args:
        catalog: An open :class:`radloop.core.catalog.Catalog`.
        labeler: Defaults to a fresh :class:`ReportLabeler`.
        n_process: Worker processes.
        force: Relabel reports already labelled with this rules version.
        commit_every: Rows are committed in batches of this many reports.
        on_result: Optional callback ``(report_id, LabelResult)`` (e.g. to also write JSONL).
    """
    from sqlalchemy import delete, select

    from radloop.core.schema import WeakLabel

    labeler = labeler or ReportLabeler()
    version = labeler.rules_version
    with catalog.session() as session:
        done = set(session.execute(select(WeakLabel.report_id).where(WeakLabel.rules_version == version).distinct()).scalars())
    total = skipped = labelled = written = errors = 0
    todo: deque[str] = deque()  # ids of reports handed to the labeller, in order

    def texts() -> Iterator[str | None]:
        nonlocal total, skipped
        for report_id, text in iter_catalog_reports(catalog):
            total += 1
            if report_id in done and not force:
                skipped += 1
                continue
            todo.append(report_id)
            yield text

    pending: list[tuple[str, object]] = []

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        with catalog.session() as session:
            ids = [report_id for report_id, _ in pending]
            session.execute(delete(WeakLabel).where(WeakLabel.rules_version == version, WeakLabel.report_id.in_(ids)))
            for report_id, result in pending:
                for mention in result:
                    session.add(WeakLabel(report_id=report_id, finding=mention.finding, status=mention.status,
                                          temporality=mention.temporality, site=mention.site,
                                          laterality=mention.laterality, device_type=mention.device_type,
                                          evidence=mention.evidence, start=mention.start, end=mention.end,
                                          section=mention.section, rules_version=version))
                    written += 1
        pending.clear()

    for result in labeler.label_many(texts(), n_process=n_process):
        report_id = todo.popleft()
        labelled += 1
        errors += result.error is not None
        if on_result is not None:
            on_result(report_id, result)
        pending.append((report_id, result))
        if len(pending) >= commit_every:
            flush()
    flush()
    return LabelRunSummary(version, total, labelled, skipped, written, errors)


def stored_mentions(catalog, rules_version: str, *, exclude: Iterable[str] = frozenset(),
                    batch_size: int = 500) -> Iterator[tuple[str, list[dict]]]:
    """Yield ``(report_id, findings)`` from the catalog's ``WeakLabel`` rows of ``rules_version`` (findings in
    the ``FindingMention.to_json`` layout, in stored order), report by report in id order, skipping ``exclude``.

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

    from radloop.core.schema import WeakLabel

    columns = ("finding", "status", "temporality", "site", "laterality", "device_type", "evidence", "start", "end",
               "section")
    last_id = ""
    while True:
        with catalog.session() as session:
            ids = session.execute(select(WeakLabel.report_id).where(
                WeakLabel.rules_version == rules_version, WeakLabel.report_id > last_id).distinct()
                .order_by(WeakLabel.report_id).limit(batch_size)).scalars().all()
            if not ids:
                return
            rows = session.execute(select(WeakLabel).where(
                WeakLabel.rules_version == rules_version, WeakLabel.report_id.in_(ids))
                .order_by(WeakLabel.report_id, WeakLabel.id)).scalars().all()
            grouped: dict[str, list[dict]] = {report_id: [] for report_id in ids}
            for row in rows:
                grouped[row.report_id].append({name: getattr(row, name) for name in columns})
        for report_id in ids:
            if report_id not in exclude:
                yield report_id, grouped[report_id]
        last_id = ids[-1]
