"""Report sources: a folder is one source and one dataset named after it; folders of images and XML reports;
re-ingesting a workspace whose reports carry another dataset name; reports that link to no image."""

from __future__ import annotations

import shutil
import tarfile

from sqlalchemy import select, update

from conftest import data_path
from radloop.core.ingest import ingest_paths
from radloop.core.ingest_sources import discover
from radloop.core.schema import Report, Study

TARBALL = ("iu_xray_reports", "NLMCXR_reports_dev.tgz")


def _openi_xml_files(folder, count: int, skip: int = 0, *, only: str | None = None) -> list[str]:
    """Write ``count`` real Open-i XML reports (after ``skip``; or the one named ``only``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(data_path(*TARBALL)) as source:
        members = [m for m in source.getmembers() if m.isfile() and m.name.endswith(".xml")][skip:skip + count]
        members = [source.getmember(f"ecgen-radiology/{only}")] if only else members
        for member in members:
            (folder / member.name.split("/")[-1]).write_bytes(source.extractfile(member).read())
    return [member.name.split("/")[-1] for member in members]


def _datasets(catalog) -> set[str]:
    with catalog.session() as session:
        return set(session.scalars(select(Report.dataset)))


def test_a_report_folder_is_read_as_one_source_named_after_it(tmp_path, catalog):
    root = tmp_path / "iu"
    _openi_xml_files(root / "ecgen-radiology", 3)
    _openi_xml_files(root / "extra", 1, skip=3)  # a lone XML file in a subfolder
    (root / "more.csv").write_text("report_id,text\nK1,No acute fracture.\n", encoding="utf-8")
    found = discover([], reports=[root])
    assert found.report_files == [root] and not found.errors  # the folder itself goes to the report reader
    summary = ingest_paths(catalog, [], reports=[root], workers=1, progress=False)
    assert summary.reports_added == 5 and summary.errors == 0
    assert _datasets(catalog) == {"iu"}  # not ecgen-radiology / the lone file's stem / the CSV's stem
    again = ingest_paths(catalog, [], reports=[root], workers=1, progress=False)
    assert again.reports_added == 0 and again.reports_skipped_existing == 5


def test_xml_reports_in_an_image_folder_take_that_folder_s_dataset(tmp_path, catalog):
    root = tmp_path / "openi_case"
    root.mkdir()
    shutil.copy(data_path("iu_xray_images", "CXR3_IM-1384-1001.png"), root / "CXR1_1_IM-0001-3001.png")
    _openi_xml_files(root / "reports" / "batch", 1, only="1.xml")  # alone in a nested folder
    summary = ingest_paths(catalog, [root], workers=1, progress=False)
    assert summary.images_added == 1 and summary.reports_added == 1 and summary.errors == 0
    assert _datasets(catalog) == {"openi_case"}
    with catalog.session() as session:
        report = session.scalars(select(Report)).one()
        assert report.id == "CXR1" and report.study_id is not None  # linked to its image's study


def test_reingesting_a_workspace_named_by_the_older_rule_adds_no_second_dataset(tmp_path, catalog):
    folder = tmp_path / "iu" / "ecgen-radiology"
    names = _openi_xml_files(folder, 4)
    ingest_paths(catalog, [], reports=[tmp_path / "iu"], workers=1, progress=False)
    with catalog.session() as session:  # the rows as the older per-file naming left them
        session.execute(update(Report).values(dataset="ecgen-radiology"))
        session.execute(update(Study).values(dataset="ecgen-radiology"))
    changed = folder / names[0]  # one report's text changed since: updated in place, dataset kept
    changed.write_bytes(changed.read_bytes().replace(b"</AbstractText>", b" Addendum.</AbstractText>", 1))
    again = ingest_paths(catalog, [], reports=[tmp_path / "iu"], workers=1, progress=False)
    assert again.reports_added == 0 and again.errors == 0
    assert (again.reports_updated, again.reports_skipped_existing) == (1, 3)
    assert _datasets(catalog) == {"ecgen-radiology"}  # reports are keyed by their id, never by dataset
    with catalog.session() as session:
        assert set(session.scalars(select(Study.dataset))) == {"ecgen-radiology"}


def test_a_csv_whose_reports_reach_no_image_gets_one_warning_with_the_count_and_the_rule(tmp_path, catalog):
    from radloop.core.schema import IngestError

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(data_path("iu_xray_images", "CXR3_IM-1384-1001.png"), images / "case_a.png")
    alone = tmp_path / "alone.csv"  # reports only: no study_id, no image column
    alone.write_text("report_id,text\nA1,No fracture.\nA2,Healing fracture.\n", encoding="utf-8")
    report_only = ingest_paths(catalog, [], reports=[alone], workers=1, progress=False)
    assert report_only.warnings == 0  # a report-only workspace: nothing to link to, nothing to say
    ingest_paths(catalog, [images], workers=1, progress=False)
    strangers = tmp_path / "strangers.csv"  # images named that were never ingested, a study without images
    strangers.write_text("report_id,text,study_id,image\nS1,Fracture.,,case_zz.png\nS2,Normal.,1.2.3,\n"
                         "S3,Normal.,,case_yy\n", encoding="utf-8")
    partly = tmp_path / "partly.csv"  # one report reaches the image: the others may arrive later, no warning
    partly.write_text("report_id,text,image\nP1,Fracture.,case_a.png\nP2,Normal.,case_b.png\n", encoding="utf-8")
    summary = ingest_paths(catalog, [], reports=[strangers, partly, alone], workers=1, progress=False)
    assert summary.reports_added == 5 and summary.errors == 0 and summary.warnings == 2  # strangers, alone
    by_path = {sample["path"]: sample for sample in summary.error_samples}
    assert set(by_path) == {str(strangers), str(alone)}
    warning = by_path[str(strangers)]
    assert warning["severity"] == "warning" and warning["stage"] == "link"
    assert "none of the 3 reports of strangers.csv" in warning["reason"] and "1 catalogued images" in warning["reason"]
    assert "study_id column" in warning["reason"] and "image column" in warning["reason"]
    with catalog.session() as session:
        rows = session.scalars(select(IngestError).where(IngestError.run_id == summary.run_id)).all()
        assert sorted((row.path, row.stage) for row in rows) == [(str(alone), "link"), (str(strangers), "link")]
        assert all(row.reason.startswith("warning: none of the") for row in rows)
