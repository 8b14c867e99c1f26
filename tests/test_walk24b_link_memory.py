"""Walkthrough 24b: a report ingest's last step (linking the reports still waiting for their images) read every
waiting report of the file in one list, with its image names and their studies: its memory grew with the file
(tens of MB at 100k reports, all of them waiting in a report-only workspace).  It now goes a page of ids at a time."""

from __future__ import annotations

import tracemalloc

from sqlalchemy import insert

from radloop.core.ingest_reports import link_unlinked_reports
from radloop.core.schema import Image, Report, Study


def _waiting(catalog, start: int, count: int) -> list[str]:
    """``count`` reports, each alone in a study of its own with no image, naming images not catalogued yet."""
    ids = [f"R{index:06d}" for index in range(start, start + count)]
    with catalog.session() as session:
        session.execute(insert(Study), [{"id": f"S{index:06d}", "dataset": "t"}
                                        for index in range(start, start + count)])
        session.execute(insert(Report), [
            {"id": report_id, "study_id": f"S{index:06d}", "content_hash": f"h{index}", "text": "FINDINGS: x." * 20,
             "image_external_ids": [f"IMG{index:06d}-{view}" for view in range(4)]}
            for index, report_id in zip(range(start, start + count), ids)])
    return ids


def _peak(catalog, ids) -> int:
    tracemalloc.start()
    try:
        assert link_unlinked_reports(catalog, report_ids=set(ids)) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_linking_the_reports_of_a_big_file_holds_a_page_of_them_not_all(catalog):
    few = _waiting(catalog, 0, 500)
    _peak(catalog, few)  # statement caches first
    small = _peak(catalog, few)
    many = few + _waiting(catalog, 500, 4500)
    big = _peak(catalog, many)
    assert big < 2.5 * small, (small, big)  # ten times the reports waiting, not ten times the memory


def test_the_paged_linking_still_links_every_waiting_report_named_by_a_new_image(catalog):
    ids = _waiting(catalog, 0, 1200)
    with catalog.session() as session:
        session.add(Study(id="S-img", dataset="t"))
        session.flush()
        session.add_all([Image(id=f"I{index}", study_id="S-img", external_id=f"IMG{index:06d}-2",
                               content_hash=f"x{index}", source_path="p", source_format="png", render_path="r",
                               thumb_path="t", width=1, height=1, render_width=1, render_height=1)
                         for index in (3, 700, 1199)])
    assert link_unlinked_reports(catalog, report_ids=set(ids)) == 3
    assert link_unlinked_reports(catalog, image_names=["IMG000003-2"]) == 0  # done: nothing waits any more
    with catalog.session() as session:
        assert [session.get(Report, f"R{index:06d}").study_id for index in (3, 700, 1199, 4)] == [
            "S-img", "S-img", "S-img", "S000004"]
        assert session.get(Study, "S000700") is None  # the study it left, now empty, is gone
