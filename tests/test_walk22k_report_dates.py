"""Walkthrough 22k: report dates (schema 4).

Reports had no date in the catalog, so a study's several reports could not be ordered and the Label Studio
task's per-report headers carried none.  Now a reports CSV's ``report_date`` / ``date`` / ``study_date`` column
is read (ISO, YYYYMMDD, ISO date-times; other forms make one warning per file, the reports kept undated), an
older catalog gains the column on open, the task headers order and date the reports (the year only when the
text is redacted) and the app's report explorer shows the date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from radloop.app import views_reports
from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.ingest_reports import write_reports
from radloop.core.ingest_summary import IngestSummary
from radloop.core.reports_io import ParsedReport, ReportProblem, parse_report_date, read_reports
from radloop.core.schema import IngestError, Report, SchemaVersion, Study
from radloop.labeling.ls_tasks import _report_texts, task_report

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _csv(tmp_path: Path, body: str, name: str = "reports.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize("value, expected", [
    ("2023-04-05", date(2023, 4, 5)), ("20230405", date(2023, 4, 5)), ("2023-04-05T10:30:00", date(2023, 4, 5)),
    ("2023-04-05 23:30:00+05:00", date(2023, 4, 5)), ("2023-04-05T10:30Z", date(2023, 4, 5)), (" ", None)])
def test_accepted_date_forms(value, expected):
    assert parse_report_date(value) == expected


@pytest.mark.parametrize("value", ["03/05/2023", "5.4.2023", "2023-02-30", "20231340", "2023-W14-3", "April 5"])
def test_ambiguous_or_impossible_dates_are_refused(value):
    with pytest.raises(ValueError):
        parse_report_date(value)


def test_csv_date_columns_are_read_and_bad_dates_make_one_warning_per_file(tmp_path):
    path = _csv(tmp_path, "report_id,text,study_date,report_date,ward\n"
                          "R1,FINDINGS: one.,20230102,2023-04-05,x\n"   # report_date comes first
                          "R2,FINDINGS: two.,20230102,,x\n"              # else study_date
                          "R3,FINDINGS: three.,03/05/2023,,x\n"          # ambiguous: kept, undated
                          "R4,FINDINGS: four.,,,x\n"                     # none given
                          "R5,FINDINGS: five.,,2023-13-01,x\n")          # no such month
    items = list(read_reports(path))
    reports = {item.report_id: item.report_date for item in items if isinstance(item, ParsedReport)}
    assert reports == {"R1": date(2023, 4, 5), "R2": date(2023, 1, 2), "R3": None, "R4": None, "R5": None}
    problems = [item for item in items if isinstance(item, ReportProblem)]
    assert len(problems) == 1 and problems[0].severity == "warning" and problems[0].path == str(path)
    assert problems[0].reason.startswith("2 report date(s) not understood (line(s) 4, 6;")
    assert "03/05/2023 is ambiguous" in problems[0].reason and "kept without a date" in problems[0].reason
    plain = _csv(tmp_path, "report_id,text,date\nR9,FINDINGS: nine.,2024-01-31\n", "plain.csv")
    assert [item.report_date for item in read_reports(plain)] == [date(2024, 1, 31)]


def test_openi_reports_carry_no_date():
    """The IU / Open-i XML's only dates are the collection's publication date (the same in every report)."""
    from conftest import data_path

    tarball = data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    if not tarball.exists():
        pytest.skip(f"real Open-i reports not found at {tarball}")
    first = next(item for item in read_reports(tarball) if isinstance(item, ParsedReport))
    assert first.report_id == "CXR1" and first.report_date is None


def test_ingest_stores_the_date_and_a_later_source_that_gives_one_updates_it(catalog, tmp_path):
    path = _csv(tmp_path, "report_id,text,study_id\nR1,FINDINGS: one.,ST1\nR2,FINDINGS: two.,ST1\n")
    summary = IngestSummary("run-1")
    write_reports(catalog, path, summary, "run-1")
    with catalog.session() as session:
        assert session.scalars(select(Report.report_date).order_by(Report.id)).all() == [None, None]
    path.write_text("report_id,text,study_id,report_date\nR1,FINDINGS: one.,ST1,2023-04-05\n"
                    "R2,FINDINGS: two.,ST1,bad\nR3,FINDINGS: three.,ST1,20240101\n")
    again = IngestSummary("run-2")
    write_reports(catalog, path, again, "run-2")
    assert (again.reports_added, again.reports_updated, again.reports_skipped_existing) == (1, 1, 1)
    with catalog.session() as session:
        assert session.scalars(select(Report.report_date).order_by(Report.id)).all() == [
            date(2023, 4, 5), None, date(2024, 1, 1)]
        assert session.scalar(select(Report.text).where(Report.id == "R2")) == "FINDINGS: two."  # nothing lost
        reasons = session.scalars(select(IngestError.reason).where(IngestError.run_id == "run-2")).all()
    assert len(reasons) == 1 and reasons[0].startswith("warning: 1 report date(s) not understood (line(s) 3;")
    path.write_text("report_id,text,study_id,report_date\nR1,FINDINGS: one corrected.,ST1,2023-04-06\n"
                    "R3,FINDINGS: three.,ST1,\n")  # a changed report takes the new date; a dropped date is kept
    write_reports(catalog, path, IngestSummary("run-3"), "run-3")
    with catalog.session() as session:
        assert session.scalars(select(Report.report_date).order_by(Report.id)).all() == [
            date(2023, 4, 6), None, date(2024, 1, 1)]


def test_schema_3_catalog_gains_the_report_date_column_on_open_and_keeps_its_reports(workspace):
    old = Catalog.open(workspace)
    with old.session() as session:
        session.add(Study(id="S-1", dataset="t"))
        session.flush()
        session.add(Report(id="R-1", study_id="S-1", content_hash="h", text="FINDINGS: kept."))
    with old.engine.begin() as connection:  # a catalog made by radloop at schema version 3
        connection.execute(text("DELETE FROM schema_version WHERE version > 3"))
        connection.execute(text("ALTER TABLE reports DROP COLUMN report_date"))
    assert old.schema_version() == 3
    assert "report_date" not in {column["name"] for column in inspect(old.engine).get_columns("reports")}
    old.dispose()

    catalog = Catalog.open(workspace)  # migration 4 runs
    try:
        assert catalog.schema_version() == SCHEMA_VERSION
        with catalog.session() as session:
            assert session.scalars(select(SchemaVersion.version).order_by(SchemaVersion.version)).all() == [
                *range(1, SCHEMA_VERSION + 1)]
            report = session.get(Report, "R-1")
            assert (report.text, report.report_date) == ("FINDINGS: kept.", None)
            report.report_date = date(2022, 12, 31)
        with catalog.session() as session:
            assert session.get(Report, "R-1").report_date == date(2022, 12, 31)
    finally:
        catalog.dispose()


def test_task_headers_order_reports_by_date_undated_last():
    texts = ["FINDINGS: undated first.", "FINDINGS: later.", "FINDINGS: earlier.", "FINDINGS: undated second."]
    dates = [None, date(2023, 5, 1), date(2021, 2, 3), None]
    field = task_report(texts, "as_stored", dates=dates)
    assert field == ("=== Report 1 of 4 · 2021-02-03 ===\nFINDINGS: earlier.\n\n"
                     "=== Report 2 of 4 · 2023-05-01 ===\nFINDINGS: later.\n\n"
                     "=== Report 3 of 4 · no date ===\nFINDINGS: undated first.\n\n"
                     "=== Report 4 of 4 · no date ===\nFINDINGS: undated second.")
    redacted = task_report(texts, "redacted", dates=dates)  # the redacted field keeps the year only
    assert "=== Report 1 of 4 · 2021 ===\nFINDINGS: earlier." in redacted and "2021-02-03" not in redacted
    assert task_report(texts, "none", dates=dates) == task_report(texts, "none")  # withheld: no date either
    assert "·" not in task_report(texts[1:3], "as_stored")  # no dates known: the headers as before
    with pytest.raises(ValueError):  # a date list that does not match would drop reports silently
        task_report(texts, "as_stored", dates=dates[:2])


def test_task_reports_of_a_study_come_with_their_catalogued_dates(catalog):
    with catalog.session() as session:
        session.add(Study(id="S-1", dataset="t"))
        session.flush()
        session.add_all([Report(id="R-a", study_id="S-1", content_hash="a", text="FINDINGS: newest."),
                         Report(id="R-b", study_id="S-1", content_hash="b", text="FINDINGS: oldest.",
                                report_date=date(2020, 1, 1)),
                         Report(id="R-c", study_id="S-1", content_hash="c", text="FINDINGS: middle.",
                                report_date=date(2022, 6, 30))])
    with catalog.session() as session:
        pairs = _report_texts(session, ["S-1"])["S-1"]
    field = task_report([body for body, _ in pairs], "as_stored", dates=[when for _, when in pairs])
    assert field.index("oldest") < field.index("middle") < field.index("newest")
    assert "=== Report 2 of 3 · 2022-06-30 ===\nFINDINGS: middle." in field


def test_report_explorer_shows_the_date(catalog, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    with catalog.session() as session:
        session.add(Study(id="S-1", dataset="t"))
        session.flush()
        session.add_all([Report(id="R1", study_id="S-1", content_hash="a", text="FINDINGS: dated.",
                                report_date=date(2023, 4, 5)),
                         Report(id="R2", study_id="S-1", content_hash="b", text="FINDINGS: undated.")])
    frame = views_reports.list_reports(catalog, with_dates=True)
    assert frame[["report_id", "report_date"]].values.tolist() == [["R1", "2023-04-05"], ["R2", ""]]
    assert views_reports.report_detail(catalog, "R1").report_date == "2023-04-05"
    monkeypatch.setenv("RADLOOP_WORKSPACE", str(catalog.workspace.root))
    monkeypatch.setenv("RADLOOP_DATABASE_URL", catalog.workspace.database_url)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.run()
    app.switch_page("page_reports.py").run()
    assert not app.exception, [item.value for item in app.exception]
    picker = app.selectbox(key="reports_id")
    assert picker.options == ["R1 · 2023-04-05 · no mentions", "R2 · no mentions"]
    assert any("**R1** · 2023-04-05 · study" in item.value for item in app.markdown)
