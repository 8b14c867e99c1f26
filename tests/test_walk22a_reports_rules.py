"""Walk 22a report review: a side in a leading region header, casts and splints as their own device type, "is
excluded" as a negation (synthetic report text)."""

from __future__ import annotations

import pytest

from radloop.core.vocabulary import DEVICE_TYPES
from radloop.labeling import ReportLabeler
from report_mentions import found
from radloop.labeling.exam_side import ExamSide
from radloop.labeling.rules_loader import PIPELINE_REVISION, load_rule_set

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


# --- a side in a region header ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, side", [
    ("Right shoulder. Healing scapular fracture.", "right"),
    ("FINDINGS: Right shoulder. Healing scapular fracture.", "right"),
    ("Left wrist: Soft tissues are normal. Old ulnar styloid fracture.", "left"),
    ("FINDINGS:\nLeft wrist, 3 views:\nThere is a distal radius fracture.", "left"),
    ("Right ribs. Healing fracture of the 6th rib.", "right"),
])
def test_a_leading_region_header_gives_its_side(labeler, text, side):
    fractures = found(labeler, text, "fracture", "positive")
    assert fractures and {m.laterality for m in fractures} == {side}, fractures


@pytest.mark.parametrize("text, finding", [
    ("Bilateral hands. Healing fracture of the fifth metacarpal.", "fracture"),  # a bilateral header
    ("Left knee. Fracture of the patella. Right ankle. Fracture of the distal fibula.", "fracture"),  # two sides
    ("Left anterior oblique view. Healing rib fracture.", "fracture"),  # a view word, no site
    ("Right pelvis. Fracture of the sacrum.", "fracture"),  # a midline site
    ("Left shoulder. Pacemaker generator overlies the chest wall.", "device"),  # a chest device
    ("Healing fracture of the scapula. Right shoulder.", "fracture"),  # not leading
    ("INDICATION: Right shoulder pain. FINDINGS: Healing scapular fracture.", "fracture"),  # a history is no header
    ("Right shoulder pain. Healing scapular fracture.", "fracture"),  # more than a header
])
def test_no_side_from_these_headers(labeler, text, finding):
    mentions = found(labeler, text, finding)
    assert mentions and {m.laterality for m in mentions} == {None}, mentions


def test_header_settings_are_validated():
    with pytest.raises(ValueError, match="header_words"):
        ExamSide.from_metadata({"header_words": ["Views"]})
    settings = load_rule_set().exam_side
    assert {"findings", "impression"} <= settings.header_sections and "views" in settings.header_words


def test_pipeline_revision_was_bumped():
    assert PIPELINE_REVISION >= 7


# --- casts and splints -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Distal radius fracture in a fiberglass cast.",
    "Thumb spica splint in place.",
    "Short arm cast on the left forearm.",
])
def test_casts_and_splints_have_their_own_device_type(labeler, text):
    devices = found(labeler, text, "device", "positive")
    assert devices and {m.device_type for m in devices} == {"cast_splint"}, devices


def test_cast_splint_is_in_the_vocabulary_and_takes_the_exams_side(labeler):
    assert "cast_splint" in DEVICE_TYPES and "cast_splint" in load_rule_set().exam_side.device_types
    devices = found(labeler, "XR FOREARM LEFT\nShort arm cast in place.", "device")
    assert [(m.device_type, m.laterality) for m in devices] == [("cast_splint", "left")]


@pytest.mark.parametrize("text", [
    "Left hemidiaphragm is slightly elevated, possibly from respiratory splinting.",
    "Left wrist, now out of cast. Healed distal radius fracture.",
])
def test_no_cast_present(labeler, text):
    assert not found(labeler, text, "device", "positive")


# --- "is excluded" ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, finding, status", [
    ("Pneumothorax is excluded.", "pneumothorax", "negative"),
    ("Pneumothorax has been excluded.", "pneumothorax", "negative"),
    ("A displaced fracture was excluded on the dedicated views.", "fracture", "negative"),
    ("Pneumothorax cannot be excluded.", "pneumothorax", "uncertain"),
    ("Pneumothorax cannot entirely be excluded.", "pneumothorax", "uncertain"),
    ("Pneumothorax is not excluded.", "pneumothorax", "uncertain"),
    ("Pneumothorax has been ruled out.", "pneumothorax", "negative"),
    ("Pneumothorax has not been excluded.", "pneumothorax", "uncertain"),
    ("Pneumothorax has not been ruled out.", "pneumothorax", "uncertain"),
    ("Pneumothorax cannot be ruled out.", "pneumothorax", "uncertain"),
])
def test_excluded_is_a_negation_but_cannot_be_excluded_stays_uncertain(labeler, text, finding, status):
    assert [m.status for m in found(labeler, text, finding)] == [status]
