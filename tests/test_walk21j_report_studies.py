"""Walk 21j: a report linked to its images' study leaves no empty study behind.

A CSV report whose ``study_id`` is a hospital's study number, ingested before its PNG images, got a study of its
own (made from that number); once the images came, walk 21e linked it to the study of the image it names, but the
study made for it stayed, with no image and no report: ``radloop info`` counted one study too many.  Now such a
study is deleted in the transaction that moves its report, when nothing refers to it any more (no row of any table
with a foreign key to ``studies``).  A study that still has a report, or an image, stays.
"""

from __future__ import annotations

from sqlalchemy import select

from noise_images import named_pngs, reports_csv

from radloop.core.catalog_info import catalog_info
from radloop.core.ingest import ingest_paths
from radloop.core.ingest_reports import remove_empty_studies
from radloop.core.schema import Image, Report, Study


def _studies(catalog) -> dict[str, tuple[int, int]]:
    """study id -> (images, reports) of every study in the catalog."""
    with catalog.session() as session:
        images = [study for study in session.scalars(select(Image.study_id))]
        reports = [study for study in session.scalars(select(Report.study_id))]
        return {study: (images.count(study), reports.count(study)) for study in session.scalars(select(Study.id))}


def test_a_report_linked_after_its_images_leaves_no_empty_study(tmp_path, catalog):
    # R2's study number gets a study of its own; R4 and R5 share one (it stays: it decides over R5's image column)
    reports = reports_csv(tmp_path / "reports.csv", [("R1", "Fracture of the distal radius.", "", "wrist_a"),
                                              ("R2", "No fracture.", "HOSP-0042", "wrist_b"),
                                              ("R4", "Old fracture.", "HOSP-0050", ""),
                                              ("R5", "Healed.", "HOSP-0050", "wrist_a")])
    first = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert first.reports_added == 4 and len(_studies(catalog)) == 2  # HOSP-0042 and HOSP-0050
    images = ingest_paths(catalog, [named_pngs(tmp_path / "pngs", ["wrist_a", "wrist_b"])], workers=1, progress=False)
    assert (images.studies_added, images.reports_linked) == (2, 2)
    studies = _studies(catalog)
    assert sorted(studies.values()) == [(0, 2), (1, 1), (1, 1)]  # HOSP-0042's study is gone, HOSP-0050's stays
    info = catalog_info(catalog)
    assert info["counts"]["studies"] == 3 and sum(info["studies_by_split"].values()) == 3
    with catalog.session() as session:
        image_studies = dict(session.execute(select(Image.external_id, Image.study_id)).tuples().all())
        report_studies = dict(session.execute(select(Report.id, Report.study_id)).tuples().all())
    assert report_studies["R1"] == image_studies["wrist_a"] and report_studies["R2"] == image_studies["wrist_b"]
    again = ingest_paths(catalog, [tmp_path / "pngs"], reports=[reports], workers=1, progress=False)
    assert (again.reports_linked, again.studies_added) == (0, 0) and _studies(catalog) == studies


def test_an_updated_report_that_moves_to_another_study_leaves_no_empty_study(tmp_path, catalog):
    reports = tmp_path / "reports.csv"
    reports_csv(reports, [("R1", "Fracture.", "HOSP-0001", "")])
    ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    (before,) = _studies(catalog)
    reports_csv(reports, [("R1", "Fracture, corrected study number.", "HOSP-0002", "")])  # the source changed
    updated = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert updated.reports_updated == 1
    (after,) = _studies(catalog)
    assert after != before and _studies(catalog) == {after: (0, 1)}


def test_only_studies_nothing_refers_to_are_removed(tmp_path, catalog):
    ingest_paths(catalog, [named_pngs(tmp_path / "pngs", ["wrist_a"])], workers=1, progress=False)
    with catalog.session() as session:
        (with_image,) = session.scalars(select(Study.id))
        session.add_all([Study(id="S-report", dataset="d", split="train"), Study(id="S-empty", dataset="d",
                                                                                split="train")])
        session.flush()
        session.add(Report(id="R9", study_id="S-report", content_hash="h", dataset="d", text="t"))
    with catalog.session() as session:
        assert remove_empty_studies(session, [with_image, "S-report", "S-empty", "S-unknown"]) == 1
        assert remove_empty_studies(session, []) == 0
    assert sorted(_studies(catalog)) == sorted([with_image, "S-report"])
