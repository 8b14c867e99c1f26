"""Linking reports to images that arrive later: the work follows what the ingest added (the new images' names,
looked up in the ``report_image_names`` index), not the number of reports still waiting for their images."""

from __future__ import annotations

from sqlalchemy import select

from noise_images import reports_csv
from sqlite_steps import sqlite_steps

from radloop.core.ingest_reports import link_unlinked_reports, write_reports
from radloop.core.ingest_summary import IngestSummary
from radloop.core.schema import Image, Report, ReportImageName, Study


def _write(catalog, path) -> IngestSummary:
    summary = IngestSummary(run_id="run")
    write_reports(catalog, path, summary, "run")
    return summary


def _add_images(catalog, names: list[str]) -> None:
    with catalog.session() as session:
        for name in names:
            session.add(Study(id=f"S-{name}", dataset="t"))
            session.flush()
            session.add(Image(id=f"I-{name}", study_id=f"S-{name}", content_hash=f"h-{name}", dataset="t",
                              external_id=name, source_path=f"/x/{name}.png", source_format="png",
                              render_path="r.png", thumb_path="t.png", width=1, height=1, render_width=1,
                              render_height=1))


def _studies(catalog) -> dict[str, str | None]:
    with catalog.session() as session:
        return dict(session.execute(select(Report.id, Report.study_id)).all())


def test_images_arriving_link_the_reports_naming_them_without_reading_every_waiting_report(tmp_path, catalog):
    rows = [(f"R{n:05d}", "No fracture.", "HOSP-1" if n == 1 else "", f"img{n:05d}") for n in range(1500)]
    _write(catalog, reports_csv(tmp_path / "reports.csv", rows))
    with catalog.session() as session:  # each report's image name is indexed
        assert session.scalar(select(ReportImageName.report_id).where(ReportImageName.external_id == "img01499")) \
            == "R01499"
    _add_images(catalog, ["img00000", "img00001", "other"])
    hospital_study = _studies(catalog)["R00001"]
    linked = link_unlinked_reports(catalog, image_names=["img00000", "img00001", "other"])
    studies = _studies(catalog)
    assert linked == 2 and studies["R00000"] == "S-img00000" and studies["R00001"] == "S-img00001"
    assert studies["R00002"] is None
    with catalog.session() as session:  # the study made for the hospital's number is gone with its report
        assert session.get(Study, hospital_study) is None
    assert link_unlinked_reports(catalog) == 0  # the full pass finds nothing more: the same links

    if catalog.engine.dialect.name != "sqlite":
        return
    # the work of linking one new image does not grow with the reports waiting (1500 then 3000)
    _add_images(catalog, ["img00002"])
    few = sqlite_steps(catalog, lambda: link_unlinked_reports(catalog, image_names=["img00002"]))
    _write(catalog, reports_csv(tmp_path / "more.csv", [(f"Q{n:05d}", "Fine.", "", f"q{n:05d}")
                                                        for n in range(1500)]))
    _add_images(catalog, ["img00003"])
    many = sqlite_steps(catalog, lambda: link_unlinked_reports(catalog, image_names=["img00003"]))
    assert _studies(catalog)["R00003"] == "S-img00003"
    full = sqlite_steps(catalog, lambda: link_unlinked_reports(catalog))
    assert many < 2 * few + 10, (few, many)
    assert many * 20 < full, (many, full)


def test_a_changed_report_replaces_its_image_names_and_links_by_the_new_one(tmp_path, catalog):
    _write(catalog, reports_csv(tmp_path / "a.csv", [("R1", "Fracture.", "", "old_name")]))
    _write(catalog, reports_csv(tmp_path / "b.csv", [("R1", "Healing fracture.", "", "new_name")]))
    with catalog.session() as session:
        assert session.scalars(select(ReportImageName.external_id)).all() == ["new_name"]
    _add_images(catalog, ["old_name", "new_name"])
    assert link_unlinked_reports(catalog, image_names=["old_name"]) == 0  # no longer named by R1
    assert link_unlinked_reports(catalog, image_names=["new_name"]) == 1
    assert _studies(catalog) == {"R1": "S-new_name"}
