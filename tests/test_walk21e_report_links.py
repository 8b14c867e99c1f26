"""Walk 21e: reports and their images, ingested in either order, link the same way.

- Reports ingested before their images stayed unlinked when the images came in a run of their own: the
  relinking ("at the end of every later ingest once their images arrive") only ran in a run with report files.
- A CSV report whose ``study_id`` is a hospital's study number, ingested before its PNG images, kept an empty
  study of its own that no image ever joins (PNGs carry no StudyInstanceUID); ingested after them it took the
  study of the image it names.  Now both orders give the image's study.
  A study number shared with another report still decides over the image column, in both orders.
- The same report twice is one report; a report naming an image not catalogued is kept and linked when the
  image arrives.
"""

from __future__ import annotations

from sqlalchemy import select

from noise_images import named_pngs, reports_csv

from radloop.core.ingest import ingest_paths
from radloop.core.schema import Image, Report


REPORTS = [("R1", "Fracture of the distal radius.", "", "wrist_a"),
           ("R2", "No fracture.", "HOSP-0042", "wrist_b"),
           ("R3", "Healing fracture.", "", "wrist_later")]


def _links(catalog) -> dict[str, str | None]:
    """report id -> the external id of an image of its study (None: no study or a study without images)."""
    with catalog.session() as session:
        studies = {study: name for name, study in session.execute(select(Image.external_id, Image.study_id))}
        return {report.id: studies.get(report.study_id) for report in session.scalars(select(Report))}


def test_reports_before_their_images_are_linked_by_an_images_only_ingest(tmp_path, catalog):
    reports = reports_csv(tmp_path / "reports.csv", REPORTS)
    first = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert (first.reports_added, first.reports_linked) == (3, 0)
    images = ingest_paths(catalog, [named_pngs(tmp_path / "pngs", ["wrist_a", "wrist_b"])], workers=1, progress=False)
    assert images.reports_linked == 2
    assert _links(catalog) == {"R1": "wrist_a", "R2": "wrist_b", "R3": None}  # R3's image is still to come
    twice = ingest_paths(catalog, [], reports=[reports], workers=1, progress=False)
    assert (twice.reports_added, twice.reports_skipped_existing, twice.reports_linked) == (0, 3, 0)
    later = ingest_paths(catalog, [named_pngs(tmp_path / "later", ["wrist_later"])], workers=1, progress=False)
    assert later.reports_linked == 1
    assert _links(catalog) == {"R1": "wrist_a", "R2": "wrist_b", "R3": "wrist_later"}


def test_either_order_gives_the_same_links(tmp_path, workspace, test_catalog_url):
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import Workspace

    # R4 and R5 share a study number: a study with another report decides over the image column, in both orders
    reports = reports_csv(tmp_path / "reports.csv", REPORTS[:2] + [("R4", "Old fracture.", "HOSP-0050", ""),
                                                           ("R5", "Healed.", "HOSP-0050", "wrist_a")])
    folder = named_pngs(tmp_path / "pngs", ["wrist_a", "wrist_b"])
    links = []
    for order in ("reports first", "images first"):
        root = tmp_path / order.replace(" ", "_")
        catalog = Catalog.open(Workspace(root, test_catalog_url(root)).ensure())
        try:
            runs = [([], [reports]), ([folder], [])]
            for paths, report_files in runs if order == "reports first" else runs[::-1]:
                ingest_paths(catalog, paths, reports=report_files, workers=1, progress=False)
            links.append(_links(catalog))
        finally:
            catalog.dispose()
    assert links[0] == links[1] == {"R1": "wrist_a", "R2": "wrist_b", "R4": None, "R5": None}
