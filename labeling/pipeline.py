"""Build the spaCy/medspacy pipeline from a :class:`~radloop.labeling.rules_loader.RuleSet`.

A blank English pipeline with spaCy's rule-based ``sentencizer`` replaces PyRuSH: about ten times
faster on radiograph reports (measured on Open-i: 203 vs 2,314 reports/s) with the same targets.
Sections come from medspacy's Sectionizer (headers also end sentences), findings from its
TargetMatcher (into the span group :data:`TARGET_GROUP`), modifiers from ConText; anatomic sites and sides from a
separate medspacy matcher (:func:`build_site_matcher`, read by :func:`site_matches`).
"""

from __future__ import annotations

import re
from typing import Callable

from radloop.core.vocabulary import LATERALITIES

from .rules_loader import RuleSet

#: The span group that holds the TargetMatcher's findings (cheaper than ``doc.ents``, which medspacy
#: extends one span at a time, re-validating all entities each time).
TARGET_GROUP = "radloop_targets"
#: Tokens that end a sentence.  spaCy's tokenizer keeps a run of dots ("effusion.. Minimal") as one
#: token, so ".." / "..." / "...." must be listed or negation leaks into the next sentence.  (A change
#: here changes the labels: bump ``rules_loader.PIPELINE_REVISION``.)
SENTENCE_END = (".", "..", "...", "....", "!", "?", ";")
#: The token before a header that starts a line or follows a sentence end (medspacy's ``newline_pattern``
#: is searched in that token's text with its trailing whitespace).
HEADER_START = re.compile(r"[\n\r]\s*$|^(?:" + "|".join(re.escape(end) for end in SENTENCE_END) + r")\s*$")

#: Words that may also stand between two coordinated sites (besides laterality words and ordinals).
SITE_GAP_WORDS = frozenset({"the", "a", "an", "distal", "proximal", "mid", "middle", "lateral", "medial",
                            "anterior", "posterior", "upper", "lower", "superior", "inferior", "also"})
#: Size words that may stand in "phalanx of the little toe".
SIZE_WORDS = frozenset({"great", "big", "little", "small"})
_ORDINAL = re.compile(r"^(?:\d+(?:st|nd|rd|th)?|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|"
                      r"tenth|eleventh|twelfth)$")


class LineStartHeaders:
    """medspacy's start-of-line header filter, for some section categories only.

    The Sectionizer calls ``filter_start_lines(doc, matches)`` when ``require_start_line`` is set; this
    keeps every header match except one of ``categories`` that neither starts the text, a line, nor a
    sentence (:data:`HEADER_START`).

    Args:
        sectionizer: The medspacy Sectionizer, its rules added (medspacy names each match after its rule).
        categories: The section categories to restrict.
    """

    def __init__(self, sectionizer, categories: frozenset[str]):
        self.restricted_ids = {rule._rule_id for rule in sectionizer.rules if rule.category in categories}

    def __call__(self, doc, matches):
        from medspacy.section_detection.util import is_start_line

        strings = doc.vocab.strings
        return [match for match in matches
                if strings[match[0]] not in self.restricted_ids or is_start_line(match[1], doc, HEADER_START)]


def silence_pyrush() -> None:
    """PyRuSH logs every sentence through loguru at import; we do not use it, keep it quiet."""
    try:
        from loguru import logger
    except ImportError:  # loguru comes with medspacy; nothing to silence without it
        return
    logger.disable("PyRuSH")


def blank_pipeline():
    """Return a blank English ``spacy.Language`` (tokenizer only), ready for :func:`build_pipeline`."""
    import spacy

    nlp = spacy.blank("en")
    nlp.max_length = 2_000_000
    return nlp


def token_texts(nlp) -> Callable[[str], list[str]]:
    """``text -> token texts`` with the tokenizer of ``nlp`` (for :func:`~.rules_loader.load_rule_set`)."""
    tokenizer = nlp.tokenizer
    return lambda text: [token.text for token in tokenizer(text)]


def build_pipeline(rule_set: RuleSet, nlp=None):
    """Return a ``spacy.Language``: sentencizer -> sectionizer -> target matcher -> ConText.

    Targets go to the span group :data:`TARGET_GROUP` (not ``doc.ents``).  Headers of the rule set's
    ``line_start_sections`` count only at a line or sentence start (:class:`LineStartHeaders`).

    Args:
        rule_set: The rules.
        nlp: A :func:`blank_pipeline` to add the components to (default: a new one).
    """
    silence_pyrush()
    import warnings

    import medspacy  # noqa: F401  (registers the medspacy factories)

    # medspacy builds a token Matcher per component even when all its rules are phrases (spaCy W036)
    warnings.filterwarnings("ignore", message=r".*\[W036\]", module=r"(spacy|medspacy)(\.|$)")  # theirs only
    nlp = nlp if nlp is not None else blank_pipeline()
    nlp.add_pipe("sentencizer", config={"punct_chars": list(SENTENCE_END)})
    sectionizer = nlp.add_pipe("medspacy_sectionizer",
                               config={"rules": None, "apply_sentence_boundary": True})
    sectionizer.add(rule_set.section_rules)
    if rule_set.line_start_sections:
        sectionizer.require_start_line = True
        sectionizer.filter_start_lines = LineStartHeaders(sectionizer, rule_set.line_start_sections)
    matcher = nlp.add_pipe("medspacy_target_matcher", config={"result_type": "group", "span_group_name": TARGET_GROUP})
    matcher.add(rule_set.target_rules)
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None, "input_span_type": "group",
                                                       "span_group_name": TARGET_GROUP})
    context.add(rule_set.context_rules)
    return nlp


def build_site_matcher(nlp, rule_set: RuleSet):
    """Return a medspacy matcher for anatomic sites and laterality words (``sites.json``)."""
    from medspacy.common.medspacy_matcher import MedspacyMatcher

    matcher = MedspacyMatcher(nlp, name="radloop_sites")
    matcher.add(rule_set.site_rules)
    return matcher


def site_matches(doc, site_matcher) -> tuple[list, list]:
    """Site and laterality matches ``(category, start, end)``, in text order.

    A laterality rule with ``metadata.needs_site_after`` (the single letters "R"/"L") counts only when
    a site other than its ``metadata.except_sites`` follows it (position words and ordinals may come
    between): "R wrist", "L 5th rib" are sides, "L spine" (lumbar), "L1", "R/O" are not.  One right before
    a word of its ``metadata.not_before`` is no side ("right ventricle" is a heart chamber).
    """
    sites, sides, conditional, refinable = [], [], [], {}
    vocab = doc.vocab.strings
    for match_id, start, end in site_matcher(doc):
        label = vocab[match_id]
        rule = site_matcher.rule_map.get(label)
        category = rule.category if rule is not None else label
        metadata = (rule.metadata or {}) if rule is not None else {}
        if category not in LATERALITIES:
            sites.append((category, start, end))
            if metadata.get("of_sites"):
                refinable[start] = frozenset(metadata["of_sites"])
        elif end < len(doc) and doc[end].lower_ in metadata.get("not_before", ()):
            continue
        elif metadata.get("needs_site_after"):
            conditional.append((category, start, end, frozenset(metadata.get("except_sites", ()))))
        else:
            sides.append((category, start, end))
    if conditional:
        site_at = {start: category for category, start, _ in sites}
        for category, start, end, excepted in conditional:
            index = end
            while index < len(doc) and index not in site_at and gap_word(doc[index]):
                index += 1
            if site_at.get(index) is not None and site_at[index] not in excepted:
                sides.append((category, start, end))
    sites.sort(key=lambda item: item[1])
    sides.sort(key=lambda item: item[1])
    if refinable:
        sites = _refine_sites(doc, sites, sides, refinable)
    return sites, sides


def _refine_sites(doc, sites, sides, refinable: dict[int, frozenset]) -> list[tuple[str, int, int]]:
    """A site word with ``metadata.of_sites`` followed by "of the <site>" of one of those sites takes that site:
    "proximal phalanx of the right great toe" is the foot (sides, positions, ordinals, size words between)."""
    side_tokens = {index for _, start, end in sides for index in range(start, end)}
    refined = []
    for position, (category, start, end) in enumerate(sites):
        allowed = refinable.get(start)
        if allowed and position + 1 < len(sites) and sites[position + 1][0] in allowed \
                and end < len(doc) and doc[end].lower_ == "of" \
                and all(index in side_tokens or gap_word(doc[index]) or doc[index].lower_ in SIZE_WORDS
                        for index in range(end + 1, sites[position + 1][1])):
            category = sites[position + 1][0]
        refined.append((category, start, end))
    return refined


def gap_word(token) -> bool:
    return token.lower_ in SITE_GAP_WORDS or _ORDINAL.match(token.lower_) is not None
