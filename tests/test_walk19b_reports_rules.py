"""Report-review fixes (walk 19b) the case tables cannot state: a side that must stay empty, a header
inside a line, a hypothetical abnormality, the rule-file checks behind them.

The case tables (labeling/rules/cases/*.tsv) check what a mention has; these check what it must not have.
"""

from __future__ import annotations

import pytest

from radloop.labeling import ReportLabeler, load_rule_set
from report_mentions import found

# medspacy calls its token Matcher even when a component's rules are all phrases (spaCy W036)
pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


@pytest.mark.parametrize("text", [
    "Pacemaker leads project over the right ventricle.",
    "Right ventricular lead in satisfactory position.",
    "Cardiac defibrillator XXXX overlies the right ventricle.",
    "Dual-chamber pacemaker with leads in the right atrium and left ventricle.",
])
def test_a_heart_chamber_is_no_device_side(labeler, text):
    devices = found(labeler, text, "device")
    assert devices and {mention.laterality for mention in devices} == {None}


def test_a_side_word_keeps_its_side_before_other_words(labeler):
    assert [m.laterality for m in found(labeler, "Right subclavian catheter in the SVC.", "device")] == ["right"]


@pytest.mark.parametrize(("text", "finding", "status"), [
    # a header that starts a line is a header, wherever the line is
    ("FINDINGS: Small left pleural effusion.\nComparison: Prior study with pneumothorax.", "pneumothorax", None),
    ("FINDINGS: Chest\nComparison: Prior study with pneumothorax.\nIMPRESSION: Normal.", "pneumothorax", None),
    # one inside a line (a multi-exam report: "Chest  Comparison: There is ...") is text of the findings
    ("FINDINGS: Chest  Comparison: There is a small left pleural effusion.", "effusion", "positive"),
    # a findings header counts anywhere: a missed one would leave the findings in the history section
    ("History: cough FINDINGS: Small right pleural effusion.", "effusion", "positive"),
])
def test_excluded_headers_count_at_a_line_or_sentence_start(labeler, text, finding, status):
    assert [m.status for m in found(labeler, text, finding)] == ([status] if status else [])


def test_line_start_sections_are_section_categories():
    rule_set = load_rule_set()
    assert rule_set.line_start_sections == {"indication", "history", "comparison", "technique"}
    assert rule_set.line_start_sections <= {rule.category for rule in rule_set.section_rules}


@pytest.mark.parametrize(("text", "normal"), [
    ("No acute cardiopulmonary process. If there is concern for soft tissue or bony abnormality, XXXX.", "positive"),
    ("The lungs are clear. Further evaluation with CT can be performed to identify a small nodule.", "positive"),
    ("The lungs are clear. Possible small nodule in the right upper lobe.", "negative"),
])
def test_only_an_asserted_or_possible_abnormality_vetoes_normal(labeler, text, normal):
    assert [m.status for m in found(labeler, text, "normal")] == [normal]


def test_a_broken_device_named_once_is_a_device_and_no_fracture(labeler):
    mentions = labeler.label("FINDINGS: Fractured sternotomy wire. No acute bony abnormality.")
    assert [(m.finding, m.status, m.device_type) for m in mentions if m.finding in ("device", "fracture")] == [
        ("device", "positive", "sternotomy_wires")]


def test_a_comma_before_a_healed_finding_ends_the_uncertainty(labeler):
    text = "Axillary densities most suggestive of artifacts, healed right lateral 10th rib fracture noted."
    assert [(m.status, m.temporality) for m in found(labeler, text, "fracture")] == [("positive", "old")]
    assert [m.status for m in found(labeler, "Possible artifacts, effusion or consolidation.", "effusion")] == ["uncertain"]


class _Rule:
    def __init__(self, category, metadata):
        self.category, self.metadata = category, metadata


@pytest.mark.parametrize(("category", "metadata"), [
    ("rib", {"not_before": ["ventricle"]}),
    ("right", {"not_before": "ventricle"}),
    ("right", {"not_before": ["Ventricle"]}),
])
def test_not_before_is_checked_at_load(category, metadata):
    from radloop.labeling.rules_loader import _check_site_metadata

    with pytest.raises(ValueError, match="not_before"):
        _check_site_metadata(_Rule(category, metadata), "sites.json, rule 0")


def test_device_types_by_word_are_device_types():
    from radloop.core.vocabulary import DEVICE_TYPES

    by_word = [rule for rule in load_rule_set().target_rules if (rule.metadata or {}).get("device_type_by_word")]
    assert by_word and {rule.category for rule in by_word} == {"device"}
    assert {kind for rule in by_word for kind in rule.metadata["device_type_by_word"].values()} <= set(DEVICE_TYPES)
