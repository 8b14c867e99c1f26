"""Which report weak labels speak for a study: those of the newest rules version that labelled its reports.

``radloop label-reports`` keeps the rows of every rules version (to compare versions); training with weak labels,
Label Studio pre-annotations and ``radloop export`` all read a study's labels from one version only, the newest
(the version of its newest row), so a catalog relabelled with new rules never mixes old and new statuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select

from radloop.core.catalog import chunked
from radloop.core.schema import Report, WeakLabel

__all__ = ["newest_version_rows", "study_status"]


def newest_version_rows(session, study_ids: Iterable[str], columns: Sequence = ()
                        ) -> dict[str, tuple[str, list[tuple]]]:
    """Study -> (its newest rules version, its rows of that version in row order).

    Each row is ``(finding, status, *columns)`` (``columns``: further ``WeakLabel`` columns, e.g. evidence).
    Studies without weak labels are absent.
    """
    picked = [WeakLabel.finding, WeakLabel.status, *columns]
    rows_of: dict[str, list[tuple]] = {}
    for chunk in chunked(sorted(set(study_ids))):
        for study_id, version, *row in session.execute(
                select(Report.study_id, WeakLabel.rules_version, *picked)
                .join(Report, Report.id == WeakLabel.report_id)
                .where(Report.study_id.in_(chunk)).order_by(WeakLabel.id)):
            rows_of.setdefault(study_id, []).append((version, tuple(row)))
    result: dict[str, tuple[str, list[tuple]]] = {}
    for study_id, rows in rows_of.items():
        version = rows[-1][0]  # the version of the study's newest row
        result[study_id] = (version, [row for row_version, row in rows if row_version == version])
    return result


def study_status(statuses: Iterable[str]) -> str:
    """The report-level status of one finding from its mentions' statuses: ``positive`` when any is positive,
    ``negative`` when all are negative, else ``uncertain``."""
    seen = set(statuses)
    if "positive" in seen:
        return "positive"
    return "negative" if seen == {"negative"} else "uncertain"
