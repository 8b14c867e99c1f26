"""A reports CSV whose ``study_id`` is not a catalogued study (a hospital's own study number beside PNG
images, which carry no StudyInstanceUID) links through the image it names, instead of making an empty study."""

from __future__ import annotations

import shutil

from sqlalchemy import func, select

from conftest import data_path
from radloop.core.deid import study_pseudonym
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Image, Report, Study


def _catalogue_case_a(tmp_path, catalog) -> None:
    """One real chest PNG ingested as ``case_a.png`` (a PNG has no StudyInstanceUID: its study is its own)."""
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(data_path("iu_xray_images", "CXR3_IM-1384-1001.png"), images / "case_a.png")
    ingest_paths(catalog, [images], workers=1, progress=False)


def test_a_study_number_no_image_carries_gives_way_to_the_image_named(tmp_path, catalog):
    _catalogue_case_a(tmp_path, catalog)
    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,text,study_id,image\n"
                       "R1,Transverse fracture of the distal radius.,ACC-0001,case_a.png\n"
                       "R2,No acute fracture.,ACC-0002,not_ingested.png\n", encoding="utf-8")
    summary = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert summary.reports_added == 2 and summary.reports_linked == 1 and summary.warnings == 0
    with catalog.session() as session:
        image = session.scalars(select(Image)).one()
        r1, r2 = session.get(Report, "R1"), session.get(Report, "R2")
        assert r1.study_id == image.study_id  # was a new study of its own, with no image
        key = catalog.workspace.pseudonym_key
        assert session.get(Study, study_pseudonym(key, "study", "ACC-0001")) is None
        # no image to go by: the study is made for images still to come (a DICOM with that StudyInstanceUID)
        assert r2.study_id == study_pseudonym(key, "study", "ACC-0002")
        assert session.scalar(select(func.count()).select_from(Study)) == 2
    again = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert (again.reports_skipped_existing, again.reports_linked) == (2, 0)


def test_a_catalogued_study_still_decides_over_the_image_column(tmp_path, catalog):
    _catalogue_case_a(tmp_path, catalog)
    first = tmp_path / "first.csv"
    first.write_text("report_id,text,study_id,image\nR1,Fracture.,ACC-0009,\n", encoding="utf-8")
    ingest_paths(catalog, [], reports=[first], workers=1, progress=False)  # makes study ACC-0009
    second = tmp_path / "second.csv"
    second.write_text("report_id,text,study_id,image\nR2,Healed fracture.,ACC-0009,case_a.png\n", encoding="utf-8")
    ingest_paths(catalog, [], reports=[second], workers=1, progress=False)
    with catalog.session() as session:
        assert session.get(Report, "R2").study_id == study_pseudonym(
            catalog.workspace.pseudonym_key, "study", "ACC-0009")
