"""Case tables: every rule file has one (labeling/rules/cases/<rule file>.tsv) and every case holds."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from radloop.labeling import ReportLabeler, load_rule_set
from radloop.labeling.rules_loader import RULES_PACKAGE, rule_files

# medspacy calls its token Matcher even when a component's rules are all phrases (spaCy W036)
pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")

CASES = resources.files(RULES_PACKAGE).joinpath("cases")


def _case_rows():
    rows = []
    for item in sorted(CASES.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".tsv"):
            with item.open(newline="", encoding="utf-8") as handle:
                for number, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
                    rows.append(pytest.param(row, id=f"{item.name}:{number}"))
    return rows


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def test_every_rule_file_has_a_case_table():
    case_names = {item.name for item in CASES.iterdir()}
    for name in rule_files():
        stem = name.rsplit(".", 1)[0]
        assert f"{stem}.tsv" in case_names, f"rule file {name} has no case table cases/{stem}.tsv"


@pytest.mark.parametrize("case", _case_rows())
def test_case(labeler, case):
    mentions = [m for m in labeler.label(case["sentence"]) if m.finding == case["finding"]]
    if case["status"] == "absent":
        assert not [m for m in mentions if m.status == "positive"], mentions
        return
    assert mentions, f"no {case['finding']} mention in {case['sentence']!r}"
    expected = {key: case[key] for key in ("status", "site", "laterality", "temporality", "device_type") if case.get(key)}
    got = [{key: getattr(m, key) for key in expected} for m in mentions]
    assert expected in got, f"{case['sentence']!r}: expected {expected}, got {got}"


def test_unknown_rule_keys_are_rejected():
    from medspacy.context import ConTextRule
    from medspacy.target_matcher import TargetRule

    with pytest.raises(ValueError, match="invalid keys"):
        TargetRule.from_dict({"literal": "x", "category": "nodule", "bogus": 1})
    with pytest.raises(ValueError, match="invalid keys"):
        ConTextRule.from_dict({"literal": "x", "category": "NEGATED_EXISTENCE", "direction": "FORWARD", "typo": 1})


def test_rule_files_load_with_provenance_and_known_callbacks():
    rule_set = load_rule_set()
    assert rule_set.target_rules and rule_set.context_rules and rule_set.section_rules and rule_set.site_rules
    assert {"indication", "history", "comparison"} <= rule_set.excluded_sections
    for name in rule_files():
        data = json.loads(resources.files(RULES_PACKAGE).joinpath(name).read_text())
        assert data["metadata"].get("provenance"), f"{name}: file-level provenance missing"
    assert any(rule.on_modifies is not None for rule in rule_set.context_rules)


def test_rules_version_is_a_stable_hash(labeler):
    assert labeler.rules_version.startswith("rules-") and len(labeler.rules_version) == 18
    assert ReportLabeler().rules_version == labeler.rules_version
