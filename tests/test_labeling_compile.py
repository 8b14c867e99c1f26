"""Speed mechanisms of the labeller keep its output: phrase-compiled token patterns, forked workers."""

from __future__ import annotations

import csv
import multiprocessing
from importlib import resources

import pytest

from radloop.labeling import ReportLabeler
from radloop.labeling.pipeline import blank_pipeline, token_texts
from radloop.labeling.rules_loader import (
    MAX_PHRASES, RULES_PACKAGE, _check_phrase_conflicts, _read, compile_phrases, pattern_phrases, rule_files,
)
from conftest import data_path

# medspacy calls its token Matcher even when a component's rules are all phrases (spaCy W036)
pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")

KINDS = ("target_rules", "context_rules", "section_rules", "site_rules")


def _authored_token_rules() -> list[tuple[str, dict]]:
    rules = []
    for name in rule_files():
        if name.endswith(".json"):
            data = _read(name)
            for kind in KINDS:
                rules += [(name, rule) for rule in data.get(kind, []) if isinstance(rule.get("pattern"), list)]
    return rules


def _case_sentences() -> list[str]:
    sentences = []
    for item in resources.files(RULES_PACKAGE).joinpath("cases").iterdir():
        if item.name.endswith(".tsv"):
            with item.open(newline="", encoding="utf-8") as handle:
                sentences += [row["sentence"] for row in csv.DictReader(handle, delimiter="\t")]
    return sentences


def test_pattern_phrases_spells_out_finite_word_patterns():
    assert pattern_phrases([{"LOWER": {"IN": ["lobar", "lobe"]}}, {"LOWER": "collapse"}]) == [
        ("lobar", "collapse"), ("lobe", "collapse")]
    assert pattern_phrases([{"LOWER": "mild", "OP": "?"}, {"LOWER": "height"}, {"LOWER": "loss"}]) == [
        ("mild", "height", "loss"), ("height", "loss")]
    assert pattern_phrases([{"LOWER": "findings"}, {"ORTH": {"IN": ["-", "--"]}}]) == [
        ("findings", "-"), ("findings", "--")]
    assert pattern_phrases([{"LOWER": "a", "OP": "?"}, {"LOWER": "a", "OP": "?"}]) == [("a", "a"), ("a",)]


@pytest.mark.parametrize("pattern", [
    [{"LOWER": "pleural"}, {"IS_PUNCT": False, "OP": "{0,2}"}, {"LOWER": "thickening"}],  # a gap
    [{"LOWER": "surgical"}, {"TEXT": "XXXX"}],  # case-sensitive
    [{"ORTH": "Heart"}],  # cased ORTH
    [{"LOWER": "Heart"}],  # never matches as a token pattern; must not start matching as a phrase
    [{"LOWER": {"NOT_IN": ["of"]}}],
    [{"LOWER": "no"}, {"LOWER": "xxxx", "OP": "+"}],
    [{"LOWER": {"IN": [f"w{index}" for index in range(MAX_PHRASES + 1)]}}],  # too many phrases
    "regex",
])
def test_pattern_phrases_leaves_other_patterns_alone(pattern):
    assert pattern_phrases(pattern) is None


def test_a_word_the_tokenizer_splits_keeps_its_token_pattern():
    tokenize = token_texts(blank_pipeline())
    rule = {"literal": "x", "category": "device", "pattern": [{"LOWER": {"IN": ["radio-opaque", "opaque"]}}]}
    assert compile_phrases(rule, tokenize) is None
    compiled = compile_phrases(dict(rule, pattern=[{"LOWER": {"IN": ["radiopaque", "opaque"]}}]), tokenize)
    assert [entry["literal"] for entry in compiled] == ["radiopaque", "opaque"]
    assert all(entry["pattern"] is None and entry["metadata"]["rule"] == "x" for entry in compiled)


def test_compiled_phrases_find_exactly_the_spans_of_the_token_patterns():
    """Slow reference: spaCy's token Matcher on the authored pattern vs PhraseMatcher on the phrases."""
    from spacy.matcher import Matcher, PhraseMatcher

    nlp = blank_pipeline()
    tokenize = token_texts(nlp)
    compiled = [(name, rule, compile_phrases(rule, tokenize)) for name, rule in _authored_token_rules()]
    compiled = [entry for entry in compiled if entry[2]]
    assert len(compiled) >= 10, "the rule files have finite token patterns; expected them compiled"
    texts = _case_sentences()
    for _, _, phrases in compiled:  # every phrase in running text, in upper case, and run together
        texts += [f"There is {entry['literal']}." for entry in phrases[:50]] + [phrases[0]["literal"].upper()]
        texts.append(" ".join(entry["literal"] for entry in phrases[:20]))
    docs = [nlp.make_doc(text) for text in texts]
    for name, rule, phrases in compiled:
        matcher = Matcher(nlp.vocab)
        matcher.add("rule", [rule["pattern"]])
        phrase_matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        phrase_matcher.add("rule", [nlp.make_doc(entry["literal"].lower()) for entry in phrases])
        for doc in docs:
            expected = {(start, end) for _, start, end in matcher(doc)}
            assert {(start, end) for _, start, end in phrase_matcher(doc)} == expected, (name, rule["literal"], doc.text)


def test_phrases_two_rules_label_differently_are_rejected():
    from medspacy.target_matcher import TargetRule

    seen: dict = {}
    _check_phrase_conflicts([TargetRule("Nipple markers", "device", metadata={"device_type": "other_device"})],
                            seen, "targets_devices.json, rule 1")
    _check_phrase_conflicts([TargetRule("nipple  markers", "device", metadata={"device_type": "other_device"})],
                            seen, "targets_devices.json, rule 2")  # same outcome: fine
    with pytest.raises(ValueError, match="nipple markers.*targets_devices.json, rule 1"):
        _check_phrase_conflicts([TargetRule("nipple markers", "pseudo")], seen, "targets_other.json, rule 9")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="workers inherit the labeller only where processes fork")
def test_forked_workers_run_the_parents_labeller():
    labeler = ReportLabeler()
    labeler._rule_set.excluded_sections = frozenset()  # a change a freshly built labeller would not have
    texts = ["INDICATION: pneumothorax.", "FINDINGS: Small left effusion."] * 70
    serial = [list(result) for result in labeler.label_many(texts)]
    assert any(mention.finding == "pneumothorax" for mention in serial[0])
    assert [list(result) for result in labeler.label_many(texts, n_process=2)] == serial


def test_dev_reports_label_as_with_the_authored_token_patterns():
    """The compiled pipeline and one with every authored token pattern give the same mentions."""
    from radloop.labeling.labeler import ReportLabeler as Labeler
    from radloop.labeling.mentions import doc_mentions
    from radloop.labeling.pipeline import build_pipeline, build_site_matcher
    from radloop.labeling.rules_loader import load_rule_set
    from radloop.labeling.sources import iter_reports
    from radloop.labeling.text import clean_text

    tarball = data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")
    texts = [report.text for _, report in zip(range(400), iter_reports(tarball))] + _case_sentences()
    reference_rules = load_rule_set()  # no tokenizer: token patterns stay token patterns
    nlp = build_pipeline(reference_rules)
    sites = build_site_matcher(nlp, reference_rules)
    expected = [doc_mentions(nlp(clean_text(text)[0]), sites, reference_rules.excluded_sections, reference_rules.exam_side)
                for text in texts]
    assert [list(result) for result in Labeler().label_many(texts)] == expected
