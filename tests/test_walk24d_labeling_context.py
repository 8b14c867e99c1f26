"""Walk 24d: the weak labeller's side, site and temporality beyond one finding's words (report texts written for this
test): a side/site from an earlier sentence of the paragraph, a site far from its finding, several sites or sides
around one finding word, "subacute", and a device next to a healing fracture."""

from __future__ import annotations

import pytest
from radloop.labeling import ReportLabeler
from radloop.labeling.exam_side import ExamSide
from radloop.labeling.rules_loader import PIPELINE_REVISION

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def _found(labeler, text, finding):
    return [m for m in labeler.label(text) if m.finding == finding]


def _places(labeler, text, finding="fracture"):
    return {(m.site, m.laterality) for m in _found(labeler, text, finding)}


# --- a side or site given in an earlier sentence of the paragraph --------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Posterior fat pad sign on the right. After the fall, this suggests an occult fracture.", {("elbow", "right")}),
    ("Elevated posterior fat pad of the left elbow. In the setting of trauma an occult fracture is suspected.",
     {("elbow", "left")}),
    ("Marked soft tissue swelling about the right wrist. There is a nondisplaced fracture of the distal radius.",
     {("radius", "right")}),
    ("Right tibia with an intramedullary nail. Bridging callus across the fracture site.", {("tibia", "right")}),
    ("Ill-defined sclerosis along the anterior left 8th rib. This probably represents an old fracture.",
     {("rib", "left")}),
])
def test_side_and_site_from_an_earlier_sentence(labeler, text, expected):
    assert _places(labeler, text) == expected, labeler.label(text)


@pytest.mark.parametrize("text, expected", [
    # both sides named before: none
    ("Swelling about the left wrist and the right ankle. There is a nondisplaced fracture of the distal radius.",
     {("radius", None)}),
    ("Left knee: soft tissue swelling. Right ankle: unremarkable. There is a fracture of the distal fibula.",
     {("fibula", None)}),
    # ... or anywhere in the paragraph: "Left knee. Fracture of the patella. Right ankle. ..." names both
    ("Swelling about the left wrist. There is a fracture of the distal radius. The right wrist is unremarkable.",
     {("radius", None)}),
    # a reason for the exam is no place of a finding
    ("Left hip pain after a fall. There is a fracture of the femoral neck.", {("hip", None)}),
    # a chest finding's side locates no bone
    ("Right lower lobe atelectasis near the 9th rib. Old healed rib fracture.", {("rib", None)}),
    # a rib takes a side only from a rib
    ("Healed left clavicle fracture. Old rib fractures.", {("clavicle", "left"), ("rib", None)}),
    # a line break ends the paragraph
    ("XR WRIST\nSoft tissue swelling about the left wrist.\nThere is a fracture of the distal radius.", {("radius", None)}),
    # a view side is no side
    ("Right lateral decubitus view of the hip. Fracture of the femoral neck.", {("hip", None)}),
])
def test_no_side_from_other_sentences_when_ambiguous(labeler, text, expected):
    assert _places(labeler, text) == expected, labeler.label(text)


def test_same_site_only_and_reason_words_are_validated():
    with pytest.raises(ValueError, match="same_site_only"):
        ExamSide.from_metadata({"same_site_only": ["ribs"]})
    assert ExamSide.from_metadata({"same_site_only": ["rib"]}).same_site_only == {"rib"}
    with pytest.raises(ValueError, match="reason_words"):
        ExamSide.from_metadata({"reason_words": ["Pain"]})


# --- a site more than the window away ------------------------------------------------------------------------------

def test_a_far_site_with_nothing_between_is_the_findings(labeler):
    text = "There is a fracture involving the cortex along the medial aspect of the distal metaphysis of the right tibia."
    assert _places(labeler, text) == {("tibia", "right")}


def test_a_far_site_after_a_clause_mark_is_not(labeler):
    text = "There is a fracture, which is best seen on the lateral view and extends into the surface of the right tibia."
    assert _places(labeler, text) == {(None, None)}


# --- several sites or sides around one finding word ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Facial bones: Fractures of the left mandibular angle and right parasymphysis.", {("skull", "left"), ("skull", "right")}),
    ("Left mandibular angle and right parasymphysis fractures.", {("skull", "left"), ("skull", "right")}),
    ("Fractures of the right radial shaft and left ulnar shaft.", {("radius", "right"), ("ulna", "left")}),
    ("Fractures of the right 7th and left 8th ribs.", {("rib", "right"), ("rib", "left")}),
    ("Healed fractures of the left 4th, 5th and right 6th ribs.", {("rib", "left"), ("rib", "right")}),
])
def test_each_site_and_side_gets_a_mention(labeler, text, expected):
    assert _places(labeler, text) == expected, labeler.label(text)


def test_ribs_of_one_side_are_one_mention(labeler):
    # one site word and one side: the vocabulary has one "rib" site, so one mention (not one per rib)
    mentions = _found(labeler, "Fractures of the right 7th and 8th ribs.", "fracture")
    assert [(m.site, m.laterality) for m in mentions] == [("rib", "right")]


# --- subacute -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, temporality", [
    ("Subacute fracture of the right fifth metatarsal with periosteal reaction.", "unspecified"),
    ("Sub-acute fracture of the right fifth metatarsal.", "unspecified"),  # was acute
    ("Sub acute fracture of the right fifth metatarsal.", "unspecified"),  # was acute
    ("Acute or subacute fracture of the left 9th rib.", "acute"),
    ("Subacute healing fracture of the left radius.", "old"),
])
def test_subacute_is_neither_acute_nor_old(labeler, text, temporality):
    mentions = _found(labeler, text, "fracture")
    assert {m.temporality for m in mentions} == {temporality}
    assert all("SUBACUTE" in m.modifiers for m in mentions)


# --- a device next to a healing fracture ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, fracture, device", [
    ("Healing fracture of the distal left radius with plate and screws.", "old", "unspecified"),
    ("Plate and screws transfix a healing fracture of the distal left radius.", "old", "unspecified"),
    ("Healing distal right radius fracture in a fiberglass cast.", "old", "unspecified"),
    ("New left PICC and healed left rib fractures.", "old", "acute"),
    ("Acute fracture of the left femoral shaft with an intramedullary nail.", "acute", "unspecified"),
])
def test_a_device_does_not_take_the_fractures_age(labeler, text, fracture, device):
    assert {m.temporality for m in _found(labeler, text, "fracture")} == {fracture}
    assert {m.temporality for m in _found(labeler, text, "device")} == {device}


def test_pipeline_revision_was_bumped():
    assert PIPELINE_REVISION >= 9
