"""Report-review fixes the case tables cannot state: a laterality that must stay empty, sides shared or not.

The case tables (labeling/rules/cases/*.tsv) check what a mention has; these check what it must not take
from a neighbouring phrase.
"""

from __future__ import annotations

import pytest

from radloop.labeling import ReportLabeler

# medspacy calls its token Matcher even when a component's rules are all phrases (spaCy W036)
pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def _sides(labeler, text: str, finding: str) -> list[str | None]:
    return [mention.laterality for mention in labeler.label(text) if mention.finding == finding]


@pytest.mark.parametrize("text", [
    "Stable cardiomegaly with right mediastinal shift.",
    "No cardiomegaly with bilateral small pleural effusions.",
    "The heart is mildly enlarged and the vasculature is more prominent on the left.",
])
def test_cardiomegaly_takes_no_side(labeler, text):
    assert _sides(labeler, text, "cardiomegaly") == [None]


@pytest.mark.parametrize(("text", "finding"), [
    ("No pneumothorax with small right pleural effusion.", "pneumothorax"),
    ("Congestive heart failure with basilar pulmonary interstitial edema and bilateral pleural fluid.", "edema"),
])
def test_a_side_in_front_of_a_later_finding_is_that_finding_s(labeler, text, finding):
    assert _sides(labeler, text, finding) == [None]


@pytest.mark.parametrize(("text", "finding", "side"), [
    ("Negative for right shoulder fracture or dislocation.", "dislocation", "right"),
    ("Left pleural effusion with adjacent atelectasis.", "atelectasis", "left"),
    ("Minimal patchy atelectasis or early infiltrate in left lung base.", "atelectasis", "left"),
    ("Fracture of the right radius and left ulna.", "fracture", "right"),
])
def test_a_shared_side_stays_shared(labeler, text, finding, side):
    assert side in _sides(labeler, text, finding)


def test_fracture_dislocation_is_both_with_one_evidence_span(labeler):
    text = "Fracture-dislocation of the right shoulder."
    mentions = {mention.finding: mention for mention in labeler.label(text)}
    fracture, dislocation = mentions["fracture"], mentions["dislocation"]
    assert (fracture.start, fracture.end) == (dislocation.start, dislocation.end)
    assert text[dislocation.start:dislocation.end] == "Fracture-dislocation"


def test_no_fracture_dislocation_negates_both(labeler):
    mentions = labeler.label("Left knee: There is no fracture-dislocation.")
    assert {(m.finding, m.status) for m in mentions if m.finding != "normal"} == {
        ("fracture", "negative"), ("dislocation", "negative")}


def test_also_findings_name_vocabulary_findings():
    from radloop.core.vocabulary import FINDINGS
    from radloop.labeling import load_rule_set

    named = {also for rule in load_rule_set().target_rules for also in (rule.metadata or {}).get("also_findings", ())}
    assert named and named <= set(FINDINGS)


def test_a_fractured_device_keeps_the_bone_fracture_of_the_same_report(labeler):
    mentions = labeler.label("Healed right clavicle fracture. Fracture of the most superior sternotomy wire.")
    fractures = [m for m in mentions if m.finding == "fracture"]
    assert [(m.site, m.laterality, m.temporality) for m in fractures] == [("clavicle", "right", "old")]
