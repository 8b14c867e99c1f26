"""Report ingest: the real Open-i XML (sections, MeSH, image ids), CSV with odd encodings and empty rows, links."""

from __future__ import annotations

import io
import itertools
import shutil
import tarfile

from sqlalchemy import select

from conftest import data_path
from radloop.core.deid import study_pseudonym
from radloop.core.ingest import ingest_paths
from radloop.core.reports_io import ParsedReport, ReportProblem, read_reports
from radloop.core.schema import Image, IngestError, Report

TARBALL = ("iu_xray_reports", "NLMCXR_reports_dev.tgz")


def _openi_subset(tmp_path, count: int = 40) -> tuple:
    """The first ``count`` XML files of the real tarball, repacked, plus the raw bytes of CXR1."""
    target = tmp_path / "openi_subset.tgz"
    with tarfile.open(data_path(*TARBALL)) as source, tarfile.open(target, "w:gz") as subset:
        members = [m for m in source.getmembers() if m.isfile()][:count]
        for member in members:
            subset.addfile(member, source.extractfile(member))
        first = source.extractfile(source.getmember("ecgen-radiology/1.xml")).read()
    return target, first


def test_openi_xml_sections_mesh_and_image_ids(tmp_path):
    xml = tmp_path / "1.xml"
    _, first = _openi_subset(tmp_path, count=1)
    xml.write_bytes(first)
    [report] = list(read_reports(xml))
    assert isinstance(report, ParsedReport) and report.report_id == "CXR1"
    assert set(report.sections) == {"COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"}
    assert report.sections["INDICATION"] == "Positive TB test"
    assert report.text.startswith("COMPARISON: None.\n\nINDICATION: Positive TB test\n\nFINDINGS: The cardiac")
    assert report.text.endswith("IMPRESSION: Normal chest x-XXXX.")
    assert report.expert_codes == ("normal",)
    assert report.image_external_ids == ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")


def test_real_tarball_reports_are_read_with_empty_ones_reported():
    items = list(itertools.islice(read_reports(data_path(*TARBALL)), 700))
    reports = [item for item in items if isinstance(item, ParsedReport)]
    problems = [item for item in items if isinstance(item, ReportProblem)]
    assert len(reports) > 650 and all(r.report_id.startswith("CXR") and r.text for r in reports)
    assert any("Fractures, Bone" in code for r in reports for code in r.expert_codes)
    assert problems and all(p.severity == "warning" and "no text" in p.reason for p in problems)


def test_openi_ingest_links_reports_and_images_by_uid(tmp_path, catalog):
    tarball, _ = _openi_subset(tmp_path, count=40)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(data_path("iu_xray_images", "CXR3_IM-1384-1001.png"), images / "CXR1_1_IM-0001-3001.png")
    summary = ingest_paths(catalog, [images], reports=[tarball], workers=1, progress=False)
    assert summary.images_added == 1 and summary.reports_added >= 35 and summary.errors == 0
    with catalog.session() as session:
        report = session.get(Report, "CXR1")
        image = session.scalars(select(Image)).one()
        assert report.study_id == image.study_id == study_pseudonym(catalog.workspace.pseudonym_key, "openi", "CXR1")
        assert image.body_region == "chest" and report.expert_codes == ["normal"]
        assert report.sections["FINDINGS"].startswith("The cardiac silhouette")
    again = ingest_paths(catalog, [tarball], workers=1, progress=False)
    assert again.reports_added == 0 and again.reports_skipped_existing == summary.reports_added


def test_a_folder_of_openi_xml_files_is_one_dataset_named_after_the_folder(tmp_path, catalog):
    folder = tmp_path / "iu" / "ecgen-radiology"
    folder.mkdir(parents=True)
    with tarfile.open(data_path(*TARBALL)) as source:
        members = [m for m in source.getmembers() if m.isfile() and m.name.endswith(".xml")][:5]
        for member in members:
            (folder / member.name.split("/")[-1]).write_bytes(source.extractfile(member).read())
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(folder / members[0].name.split("/")[-1], single / "7.xml")
    summary = ingest_paths(catalog, [], reports=[folder], workers=1, progress=False)
    assert summary.reports_added >= 4 and summary.errors == 0
    with catalog.session() as session:
        assert {report.dataset for report in session.scalars(select(Report))} == {"ecgen-radiology"}
        count = len(session.scalars(select(Report)).all())
    again = ingest_paths(catalog, [], reports=[folder], workers=1, progress=False)
    assert again.reports_added == 0 and again.reports_skipped_existing == summary.reports_added
    with catalog.session() as session:
        assert len(session.scalars(select(Report)).all()) == count
    from radloop.core.ingest_reports import _dataset_name

    assert _dataset_name(single / "7.xml") == "7"  # a lone XML file keeps its own name
    assert _dataset_name(tmp_path / "NLMCXR_reports_dev.tgz") == "NLMCXR_reports_dev"


def test_csv_reports_odd_encoding_empty_rows_and_links(tmp_path, catalog):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(data_path("iu_xray_images", "CXR3_IM-1384-1001.png"), images / "case_a.png")
    ingest_paths(catalog, [images], workers=1, progress=False)
    utf8 = tmp_path / "reports.csv"
    utf8.write_text("report_id,text,study_id,image\n"
                    "R1,\"FINDINGS: Oblique fracture of the distal radius.\nIMPRESSION: Fracture.\",,case_a.png\n"
                    "R2,No acute cardiopulmonary process.,1.2.3.4,\n"
                    "R3,   ,,\n", encoding="utf-8")
    legacy = tmp_path / "legacy.csv"
    legacy.write_bytes("report_id,text\nL1,Épanchement pleural droit; no pneumothorax – stable.\n".encode("cp1252"))
    summary = ingest_paths(catalog, [], reports=[utf8, legacy], workers=1, progress=False)
    # empty R3, cp1252 x2, and legacy.csv: its one report names no study and no image while the catalog has one
    assert summary.reports_added == 3 and summary.errors == 0 and summary.warnings == 4
    assert summary.reports_linked == 1  # R1 through the image it names (R2 has its own study id)
    assert ingest_paths(catalog, [], reports=[utf8], workers=1, progress=False).reports_linked == 0  # already
    with catalog.session() as session:
        image = session.scalars(select(Image)).one()
        r1, r2, l1 = (session.get(Report, key) for key in ("R1", "R2", "L1"))
        assert r1.study_id == image.study_id and r1.image_external_ids == ["case_a"]
        assert r1.sections == {"FINDINGS": "Oblique fracture of the distal radius.", "IMPRESSION": "Fracture."}
        assert r2.study_id == study_pseudonym(catalog.workspace.pseudonym_key, "study", "1.2.3.4")
        assert l1.text.startswith("Épanchement") and "–" in l1.text and l1.meta["decode_fallback"] == "cp1252"
        reasons = [row.reason for row in session.scalars(select(IngestError))]
    assert any("R3 is empty" in reason for reason in reasons)
    assert any("cp1252" in reason for reason in reasons)


def test_unparsable_xml_and_bad_csv_header_are_errors(tmp_path, catalog):
    broken = tmp_path / "broken.xml"
    broken.write_text("<eCitation><uId id='CXR9'/><Abstract>")
    header = tmp_path / "header.csv"
    header.write_text("id,body\n1,text\n")
    latin = tmp_path / "latin.xml"
    latin.write_bytes(io.BytesIO(
        "<?xml version='1.0' encoding='utf-8'?><eCitation><uId id='CXR8'/><Abstract>"
        "<AbstractText Label='FINDINGS'>Côtes normales.</AbstractText></Abstract></eCitation>".encode("cp1252")
    ).getvalue())
    summary = ingest_paths(catalog, [], reports=[broken, header, latin], workers=1, progress=False)
    assert summary.errors == 2 and summary.reports_added == 1 and summary.failed
    with catalog.session() as session:
        assert session.get(Report, "CXR8").text == "FINDINGS: Côtes normales."


def test_info_lists_report_warnings_apart_from_errors(tmp_path, catalog):
    """`radloop info` listed "no text" warnings under ingest errors although ingest counted them as warnings."""
    from radloop.core.catalog_info import catalog_info

    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,text\nR1,No fracture.\nR2,   \n", encoding="utf-8")
    summary = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert summary.errors == 0 and summary.warnings == 1
    info = catalog_info(catalog)
    assert info["ingest_errors_by_stage"] == {} and info["recent_errors"] == [] and info["last_error_run"] is None
    assert sum(info["ingest_warnings_by_stage"].values()) == 1 and info["last_warning_run"] == summary.run_id
    assert info["counts"]["ingest_errors"] == 0 and info["counts"]["ingest_warnings"] == 1
    assert len(info["recent_warnings"]) == 1 and "R2" in info["recent_warnings"][0]
    assert not info["recent_warnings"][0].split(": ", 2)[-1].startswith("warning: ")  # the section says so
    broken = tmp_path / "broken.xml"
    broken.write_text("<eCitation><uId id='CXR9'/><Abstract>")
    failed = ingest_paths(catalog, [], reports=[broken], workers=1, progress=False)
    info = catalog_info(catalog)
    assert failed.errors == 1 and sum(info["ingest_errors_by_stage"].values()) == 1
    assert info["last_error_run"] == failed.run_id and len(info["recent_errors"]) == 1
    assert sum(info["ingest_warnings_by_stage"].values()) == 1
    assert info["counts"]["ingest_errors"] == 1 and info["counts"]["ingest_warnings"] == 1


def test_cli_info_prints_warnings_as_warnings(tmp_path, catalog):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,text\nR1,No fracture.\nR2,   \n", encoding="utf-8")
    ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    result = CliRunner().invoke(build_app(), ["info", "--workspace", str(catalog.workspace.root)])
    assert result.exit_code == 0, result.output
    assert "ingest warning" in result.output and "ingest error" not in result.output
