"""Walkthrough 23f: `label-reports catalog` at archive scale: what a rerun does.

A rerun labelled every report in which nothing was found again (it has no weak_labels row to show it was
labelled), a report whose text a re-ingest changed kept the labels of its old text, a rerun with nothing to
label still built the labeller (seconds, ~800 MB), and an interrupted run had to leave no duplicate or lost rows.
A fake labeller (the rules' findings do not matter here) counts what it is given.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from radloop.core.ingest_reports import write_reports
from radloop.core.ingest_summary import IngestSummary
from radloop.core.records import FindingMention
from radloop.core.schema import Report, WeakLabel
from radloop.labeling.labeler import LabelResult
from radloop.labeling.store import EMPTY_KEY, label_catalog, stored_mentions
from sqlite_steps import sqlite_steps


class CountingLabeler:
    """One ``effusion`` mention per occurrence of the word in a text, none otherwise; remembers the texts."""

    rules_version = "rules-walk23f"

    def __init__(self, stop_after: int | None = None):
        self.seen: list[str] = []
        self.stop_after = stop_after

    def label_many(self, texts, n_process=1):
        for text in texts:
            if self.stop_after is not None and len(self.seen) == self.stop_after:
                raise KeyboardInterrupt  # Ctrl-C half-way through
            self.seen.append(text)
            yield LabelResult([FindingMention("effusion", "positive", evidence="effusion")] * text.count("effusion"))


def _reports(catalog, count: int) -> None:
    with catalog.session() as session:
        for index in range(count):
            text = "FINDINGS: Small effusion." if index % 3 else "PA and lateral views."  # a third: nothing found
            session.add(Report(id=f"R{index:03d}", content_hash=f"h{index}", text=text))


def _rows(catalog) -> list[tuple[str, int]]:
    with catalog.session() as session:
        return session.execute(select(WeakLabel.report_id, func.count()).group_by(WeakLabel.report_id)
                               .order_by(WeakLabel.report_id)).all()


def test_a_rerun_labels_nothing_again_not_even_reports_without_findings(catalog):
    _reports(catalog, 9)
    first = CountingLabeler()
    summary = label_catalog(catalog, first)
    assert (summary.reports_total, summary.reports_labelled, summary.mentions_written) == (9, 9, 6)
    again = CountingLabeler()
    summary = label_catalog(catalog, again)
    assert again.seen == [] and (summary.reports_labelled, summary.reports_skipped) == (0, 9)
    # the rerun's --out holds every labelled report: those without findings with an empty list
    stored = dict(stored_mentions(catalog, "rules-walk23f"))
    assert len(stored) == 9 and stored["R000"] == [] and [f["finding"] for f in stored["R001"]] == ["effusion"]
    assert dict(stored_mentions(catalog, "rules-other")) == {}  # another rules version labelled nothing
    forced = CountingLabeler()
    label_catalog(catalog, forced, force=True)
    assert len(forced.seen) == 9 and len(_rows(catalog)) == 6


def test_a_rerun_with_nothing_to_label_does_not_build_the_labeller(catalog, monkeypatch):
    _reports(catalog, 3)
    label_catalog(catalog, CountingLabeler())

    def no_build():
        raise AssertionError("the labeller was built with nothing to label")

    monkeypatch.setattr("radloop.labeling.labeler.ReportLabeler", no_build)
    monkeypatch.setattr("radloop.labeling.rules_loader.rules_version", lambda: "rules-walk23f")
    summary = label_catalog(catalog)
    assert (summary.rules_version, summary.reports_labelled, summary.reports_skipped) == ("rules-walk23f", 0, 3)


def test_a_reingest_that_changes_one_report_gets_it_alone_relabelled(catalog, tmp_path):
    path = tmp_path / "reports.csv"
    lines = [f"R{index},FINDINGS: Small effusion number {index}." for index in range(20)]
    lines[7] = "R7,PA and lateral views."
    path.write_text("report_id,text\n" + "\n".join(lines) + "\n")
    write_reports(catalog, path, IngestSummary("run-1"), "run-1")
    label_catalog(catalog, CountingLabeler())
    lines[3] = "R3,FINDINGS: No effusion seen; effusion gone."  # two mentions now
    lines[7] = "R7,FINDINGS: New effusion."  # had nothing found
    path.write_text("report_id,text\n" + "\n".join(lines) + "\n")
    summary = IngestSummary("run-2")
    write_reports(catalog, path, summary, "run-2")
    assert summary.reports_updated == 2
    with catalog.session() as session:
        assert EMPTY_KEY not in (session.get(Report, "R7").meta or {})
    again = CountingLabeler()
    label_catalog(catalog, again)
    assert sorted(again.seen) == ["FINDINGS: New effusion.", "FINDINGS: No effusion seen; effusion gone."]
    rows = dict(_rows(catalog))
    assert len(rows) == 20 and rows["R3"] == 2 and rows["R7"] == 1 and sum(rows.values()) == 21


def test_an_interrupted_run_keeps_its_commits_and_the_rerun_finishes_without_duplicates(catalog):
    _reports(catalog, 30)
    with pytest.raises(KeyboardInterrupt):
        label_catalog(catalog, CountingLabeler(stop_after=25), commit_every=10)
    # the 25 reports labelled are kept (two batches of 10 committed, the 5 since at Ctrl-C), 9 of them empty
    assert sum(count for _, count in _rows(catalog)) == 16
    rest = CountingLabeler()
    summary = label_catalog(catalog, rest, commit_every=10)
    assert (summary.reports_labelled, summary.reports_skipped) == (5, 25) and len(rest.seen) == 5
    rows = _rows(catalog)
    assert len(rows) == 20 and all(count == 1 for _, count in rows)
    assert len(dict(stored_mentions(catalog, "rules-walk23f"))) == 30


def test_a_report_ingest_looks_its_reports_up_a_batch_at_a_time_not_one_by_one(catalog, tmp_path):
    """Each report was read back (SELECT by id) and inserted (flush) on its own: two statements a report, the
    bulk of a 100k-report ingest.  Now a batch's catalogued reports come in one query and its new ones in one
    insert; a repeated id in the file still updates the report it added."""
    from sqlalchemy import event

    path = tmp_path / "reports.csv"
    path.write_text("report_id,text\n" + "".join(f"R{index},FINDINGS: report {index}.\n" for index in range(300))
                    + "R5,FINDINGS: report 5 corrected.\n")
    statements: list[str] = []
    engine = catalog.engine

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        summary = IngestSummary("run-1")
        write_reports(catalog, path, summary, "run-1")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (summary.reports_added, summary.reports_updated) == (300, 1)
    with catalog.session() as session:
        assert session.get(Report, "R5").text == "FINDINGS: report 5 corrected."
    on_reports = [s for s in statements if "reports" in s and "report_image_names" not in s]
    assert len(on_reports) < 20, f"{len(on_reports)} statements on reports for 301 rows"


@pytest.mark.skipif(__import__("os").environ.get("RADLOOP_TEST_DATABASE") == "postgres", reason="SQLite steps")
def test_a_rerun_and_the_stored_labels_cost_the_same_per_report_however_many_are_labelled(catalog):
    """Looking a report's rows up through the rules-version index (shared by every row of a run) scanned all of
    them for each report: a rerun of a 10k-report catalog took 65 CPU-s instead of 8, growing with the square."""
    def rerun():
        label_catalog(catalog, CountingLabeler())
        assert len(dict(stored_mentions(catalog, "rules-walk23f"))) == len(_rows(catalog)) + (
            (total[0] + 2) // 3)

    def grow(count):
        with catalog.session() as session:
            for index in range(total[0], total[0] + count):
                text = "FINDINGS: Small effusion." if index % 3 else "PA and lateral views."
                session.add(Report(id=f"R{index:05d}", content_hash=f"h{index}", text=text))
        total[0] += count
        label_catalog(catalog, CountingLabeler(), commit_every=500)

    total = [0]
    grow(300)
    few = sqlite_steps(catalog, rerun, every=100)
    grow(2100)
    many = sqlite_steps(catalog, rerun, every=100)
    assert many < 8 * 2 * few, (few, many)  # 8 times the reports: linear work, not 64 times
