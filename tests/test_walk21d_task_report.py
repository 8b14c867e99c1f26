"""Walk 21d: the report field of a Label Studio task when a study has several (or absurdly long) reports.

Before, a study's report texts were joined with blank lines and nothing else: no way to tell where one report
ended, the same text stored twice shown twice, and a 61,000-character task was seen.  Now each report gets a
header, copies are shown once, and the field is capped (:data:`MAX_REPORT_CHARS`) deterministically, keeping
the FINDINGS and IMPRESSION sections the expert needs and saying in the text what was cut.
"""

from __future__ import annotations

import json

import pytest

from radloop.labeling.ls_tasks import MAX_REPORT_CHARS, MIN_REPORT_SHARE, NO_REPORT, task_report


def _long_report(number: int, padding: int = 1200) -> str:
    return (f"HISTORY: fall {number}, " + "pain " * padding + "\n"
            "TECHNIQUE: " + "views " * padding + "\n"
            f"FINDINGS: Transverse fracture of the distal radius, study report {number}.\n"
            f"IMPRESSION: Fracture {number}.")


def test_one_report_is_shown_as_it_is():
    text = "FINDINGS: No acute fracture. Orthopedic hardware in place."
    assert task_report([text], "as_stored") == text
    assert task_report([], "as_stored") == task_report(["", "  "], "as_stored") == NO_REPORT


def test_several_reports_get_a_header_each_and_copies_are_shown_once():
    field = task_report(["FINDINGS: Fracture of the radius.", "FINDINGS: Healing fracture.",
                         "FINDINGS: Fracture of the radius."], "as_stored")
    assert field == ("=== Report 1 of 3 (the same text as report 3) ===\nFINDINGS: Fracture of the radius.\n\n"
                     "=== Report 2 of 3 ===\nFINDINGS: Healing fracture.")


def test_a_long_report_keeps_its_findings_and_impression_and_says_what_was_cut():
    report = _long_report(1, padding=4000)
    assert len(report) > MAX_REPORT_CHARS
    field = task_report([report], "as_stored")
    assert len(field) <= MAX_REPORT_CHARS
    assert field == ("FINDINGS: Transverse fracture of the distal radius, study report 1.\nIMPRESSION: Fracture 1.\n"
                     "[cut by radloop: left out HISTORY, TECHNIQUE]")


def test_a_study_of_many_long_reports_is_capped_deterministically():
    reports = [_long_report(number) for number in range(1, 11)]  # ~120,000 characters
    field = task_report(reports, "as_stored")
    assert len(field) <= MAX_REPORT_CHARS and field == task_report(reports, "as_stored")
    for number in range(1, 11):  # every report's findings and impression are still there
        assert f"=== Report {number} of 10 ===" in field
        assert f"study report {number}." in field and f"IMPRESSION: Fracture {number}." in field
    assert "left out HISTORY, TECHNIQUE" in field and "pain pain" not in field


def test_too_many_reports_for_a_fair_share_shows_the_first_and_names_the_rest():
    reports = [f"Free text report {number}: " + "word " * 1000 for number in range(1, 31)]  # the 61k-character case
    field = task_report(reports, "as_stored")
    assert len(field) <= MAX_REPORT_CHARS
    shown = MAX_REPORT_CHARS // MIN_REPORT_SHARE - 1
    assert f"=== Report {shown} of 30 ===" in field and f"=== Report {shown + 1} of 30 ===" not in field
    assert field.endswith(f"[cut by radloop: {30 - shown} more report(s) of this study not shown: number(s) "
                          f"{shown + 1}-30 of 30]")
    assert field.count("characters left out]") == shown  # each shown report says it was cut


def test_short_reports_are_never_cut_to_make_room():
    reports = ["FINDINGS: short one.", "FINDINGS: " + "long " * 5000]
    field = task_report(reports, "as_stored")
    assert "=== Report 1 of 2 ===\nFINDINGS: short one.\n\n=== Report 2 of 2 ===" in field
    assert len(field) <= MAX_REPORT_CHARS and "characters left out]" in field


def test_redaction_runs_on_each_report_before_the_cut():
    signed = "FINDINGS: Fracture of the radius.\nIMPRESSION: Fracture.\nElectronically signed by Dr. Jane Quixote MD"
    field = task_report([signed, "FINDINGS: " + "word " * 5000], "redacted")
    assert "Quixote" not in field and "=== Report 1 of 2 ===" in field


@pytest.fixture
def study_with_three_reports(tmp_path, test_catalog_url):
    from ls_catalog import build_round_catalog

    from radloop.core.schema import Image, Report

    root = tmp_path / "ws"
    catalog, round_id, image_ids = build_round_catalog(root, n_images=1, database_url=test_catalog_url(root))
    with catalog.session() as session:
        study_id = session.get(Image, image_ids[0]).study_id
        for number, text in ((2, "FINDINGS: Healing fracture of the distal humerus."),
                             (3, _long_report(3, padding=3000))):
            session.add(Report(id=f"R-zz-{number}", study_id=study_id, content_hash=f"h{number}", dataset="test",
                               text=text))
    yield catalog, round_id
    catalog.dispose()


def test_the_exported_task_carries_every_report_with_its_header(study_with_three_reports, tmp_path):
    from radloop.labeling.ls_tasks import export_tasks_json

    catalog, round_id = study_with_three_reports
    path = tmp_path / "tasks.json"
    export_tasks_json(catalog, round_id, path, document_root=str(tmp_path), with_model=False, report_text="as_stored")
    [task] = json.loads(path.read_text())
    field = task["data"]["report"]
    assert field.startswith("=== Report 1 of 3 ===\nFINDINGS: Transverse fracture of the distal humerus.")
    assert "=== Report 2 of 3 ===\nFINDINGS: Healing fracture of the distal humerus." in field
    assert "=== Report 3 of 3 ===\nFINDINGS: Transverse fracture of the distal radius, study report 3." in field
    assert len(field) <= MAX_REPORT_CHARS


def test_an_upper_case_line_inside_the_findings_is_not_a_section_to_drop():
    report = ("HISTORY: " + "pain " * 3000 + "\nFINDINGS: Soft tissues normal.\nLEFT WRIST: distal radius fracture.\n"
              "Impression: Fracture.")
    field = task_report([report], "as_stored")
    assert field == ("FINDINGS: Soft tissues normal.\nLEFT WRIST: distal radius fracture.\nImpression: Fracture.\n"
                     "[cut by radloop: left out HISTORY]")
