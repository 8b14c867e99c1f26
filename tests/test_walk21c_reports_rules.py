"""Walk 21c report review: the exam's side, casts and splints, an absent healing sign (synthetic report text)."""

from __future__ import annotations

import pytest

from radloop.labeling import ReportLabeler
from report_mentions import found
from radloop.labeling.exam_side import ExamSide, first_line_end
from radloop.labeling.rules_loader import PIPELINE_REVISION, load_rule_set

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


# --- the exam's side -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "XR WRIST LEFT 3 VIEWS\nFINDINGS: There is a distal radius fracture.",
    "EXAM: LEFT WRIST. FINDINGS: There is a distal radius fracture.",
    "Left wrist, three views\n\nThere is a distal radius fracture.",
    "TECHNIQUE: Three views of the left wrist.\nFINDINGS: There is a distal radius fracture.\nIMPRESSION: Fracture.",
])
def test_a_finding_without_a_side_takes_the_exams_one_side(labeler, text):
    fractures = found(labeler, text, "fracture", "positive")
    assert fractures and {m.laterality for m in fractures} == {"left"}, fractures


@pytest.mark.parametrize("text, finding", [
    ("XR HANDS BILATERAL\nFINDINGS: Fracture of the fifth metacarpal.", "fracture"),
    ("XR KNEE LEFT; XR KNEE RIGHT\nFINDINGS: Fracture of the patella.", "fracture"),
    ("EXAM: BOTH WRISTS. FINDINGS: There is a distal radius fracture.", "fracture"),
    ("HISTORY: left wrist pain. FINDINGS: There is a distal radius fracture.", "fracture"),  # a history is no exam
    ("Findings: There is a distal radius fracture.\nLeft wrist soft tissue swelling.", "fracture"),  # no title line
    ("Fracture of the left distal radius.\nDislocation of the fifth finger.", "dislocation"),  # a finding line
    ("\n\nFINDINGS: Left wrist swelling.\nThere is a distal radius fracture.", "fracture"),  # a findings line
    ("INDICATION: left wrist pain\nFINDINGS: There is a distal radius fracture.", "fracture"),  # an indication
])
def test_no_exam_side_when_the_exam_names_none_or_both(labeler, text, finding):
    mentions = found(labeler, text, finding)
    assert mentions and all(m.laterality is None for m in mentions), mentions


def test_a_side_word_of_a_view_is_no_exam_side(labeler):
    text = "TECHNIQUE: PA, lateral and left anterior oblique views of the ribs.\nFINDINGS: Fracture of the 7th rib."
    assert [m.laterality for m in found(labeler, text, "fracture")] == [None]
    text = "TECHNIQUE: Left rib series with oblique views.\nFINDINGS: Fracture of the 7th rib."
    assert [m.laterality for m in found(labeler, text, "fracture")] == ["left"]


def test_a_finding_keeps_its_own_side(labeler):
    fractures = found(labeler, "EXAM: LEFT WRIST. FINDINGS: Fracture of the right distal radius.", "fracture")
    assert [m.laterality for m in fractures] == ["right"]


def test_midline_sites_and_chest_devices_take_no_exam_side(labeler):
    text = ("EXAM: LEFT RIBS. FINDINGS: Fracture of the 7th rib. Sternal fracture. Pacemaker in place. "
            "Sternotomy wires. Plate and screws.")
    mentions = labeler.label(text)
    by_evidence = {(m.finding, m.site, m.device_type): m.laterality for m in mentions if m.finding != "normal"}
    assert by_evidence[("fracture", "rib", None)] == "left"
    assert by_evidence[("fracture", "sternum", None)] is None
    assert by_evidence[("device", None, "pacemaker")] is None
    assert by_evidence[("device", None, "sternotomy_wires")] is None
    assert by_evidence[("device", None, "orthopedic_hardware")] == "left"


def test_first_line_end_skips_leading_blank_lines(labeler):
    doc = labeler._nlp("\n\nXR WRIST LEFT\nFINDINGS: fracture.")
    assert doc[:first_line_end(doc)].text.strip() == "XR WRIST LEFT"
    assert first_line_end(labeler._nlp("One line only.")) is None


def test_exam_side_settings_are_data_and_validated():
    settings = load_rule_set().exam_side
    assert settings is not None and "technique" in settings.sections and "fracture" in settings.findings
    with pytest.raises(ValueError, match="unknown values"):
        ExamSide.from_metadata({"findings": ["fractur"]})
    with pytest.raises(ValueError, match="keys"):
        ExamSide.from_metadata({"sections": ["technique"], "typo": []})
    with pytest.raises(ValueError, match="lower-case"):
        ExamSide.from_metadata({"view_words": ["Oblique"]})


def test_pipeline_revision_was_bumped():
    assert PIPELINE_REVISION >= 6


# --- casts and splints -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Distal radius fracture in a fiberglass cast.",
    "Views obtained through plaster cast limit fine bony detail.",
    "Thumb spica splint in place.",
    "Overlying splint material obscures detail. Splint in place.",
])
def test_casts_and_splints_are_devices(labeler, text):
    devices = found(labeler, text, "device", "positive")
    assert devices and {m.device_type for m in devices} == {"cast_splint"}, devices


@pytest.mark.parametrize("text", [
    "Left hemidiaphragm is slightly elevated, possibly from splinting.",
    "Left wrist, now out of cast. Healed distal radius fracture.",
    "Follow-up after cast removal. No fracture.",
    "Splint removed. Alignment is anatomic.",
    "Status post cast removal.",
    "Cast off. Healed distal radius fracture.",
    "No cast.",
])
def test_no_cast_present(labeler, text):
    assert not found(labeler, text, "device", "positive")


# --- an absent healing sign ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Fracture with no callus formation.",
    "Right clavicle fracture without evidence of callus formation.",
    "Fracture of the distal radius, no callous formation.",
])
def test_absent_callus_does_not_make_a_fracture_old(labeler, text):
    fractures = found(labeler, text, "fracture", "positive")
    assert fractures and all(m.temporality == "unspecified" for m in fractures), fractures
    assert all("OLD" not in m.modifiers for m in fractures)


@pytest.mark.parametrize("text", [
    "Healing fracture with callus formation.",
    "Fracture of the distal radius with callus formation.",
    "Old rib fracture with no acute fracture.",
])
def test_present_healing_signs_still_make_it_old(labeler, text):
    fractures = found(labeler, text, "fracture", "positive")
    assert fractures and fractures[0].temporality == "old", fractures


# --- "cannot (entirely) be excluded" ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, finding", [
    ("Additional fractures cannot entirely be excluded.", "fracture"),
    ("Additional fractures cannot be entirely excluded.", "fracture"),
    ("A fracture cannot be completely ruled out.", "fracture"),
    ("Small effusion could not be completely excluded.", "effusion"),
    ("Fracture not completely ruled out.", "fracture"),
    ("We cannot completely exclude a small effusion.", "effusion"),
    ("Can't entirely exclude pneumonia.", "pneumonia"),
    ("Cannot definitely rule out fracture.", "fracture"),
])
def test_an_adverb_inside_cannot_be_excluded_keeps_it_uncertain(labeler, text, finding):
    assert [m.status for m in found(labeler, text, finding)] == ["uncertain"]


def test_plain_negation_and_exclusion_still_work(labeler):
    assert [m.status for m in found(labeler, "No fracture. Pneumonia is not excluded.", "fracture")] == ["negative"]
    assert [m.status for m in found(labeler, "Cannot exclude pneumonia.", "pneumonia")] == ["uncertain"]
