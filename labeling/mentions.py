"""Turn a processed spaCy ``Doc`` into :class:`~radloop.core.records.FindingMention` records."""

from __future__ import annotations

from typing import Iterable

from radloop.core.records import FindingMention
from radloop.core.vocabulary import LATERALITIES

from .pipeline import TARGET_GROUP

#: ConText categories -> effect.
NEGATION = frozenset({"NEGATED_EXISTENCE"})
UNCERTAINTY = frozenset({"POSSIBLE_EXISTENCE", "HYPOTHETICAL"})
OLD = "OLD"
ACUTE = "ACUTE"

#: How far (tokens, same sentence) a site / laterality word may be from its finding.
SITE_WINDOW = 14
LATERALITY_WINDOW = 10
#: Findings that are anatomy-agnostic words; a site attaches to them (chest findings keep laterality only).
SITED_FINDINGS = frozenset({"fracture", "dislocation", "foreign_body", "device"})


def _status(categories: set[str]) -> str:
    if categories & NEGATION:
        return "negative"
    if categories & UNCERTAINTY:
        return "uncertain"
    return "positive"


def _temporality(span, modifiers) -> str:
    old = [m for m in modifiers if m.category == OLD]
    acute = [m for m in modifiers if m.category == ACUTE]
    if old and acute:  # the closer trigger wins ("acute on chronic" is rare on radiographs)
        nearest = min(old + acute, key=lambda m: abs(m.modifier_span[0] - span.start))
        return "old" if nearest.category == OLD else "acute"
    if old:
        return "old"
    if acute:
        return "acute"
    return "unspecified"


def _nearest(span, candidates: list[tuple[str, int, int]], window: int) -> tuple[str, int, int] | None:
    """The candidate (label, start, end) inside ``span``, else the closest within ``window`` tokens."""
    best, best_distance = None, window + 1
    for candidate in candidates:
        _, start, end = candidate
        if start >= span.start and end <= span.end:
            return candidate
        distance = start - span.end + 1 if start >= span.end else span.start - end + 1
        # prefer what follows ("fracture of the left clavicle") on ties
        distance += 0.5 if start < span.start else 0.0
        if distance < best_distance:
            best, best_distance = candidate, distance
    return best


def _anatomy(doc, site_matcher) -> tuple[list, list]:
    sites, sides = [], []
    vocab = doc.vocab.strings
    for match_id, start, end in site_matcher(doc):
        label = vocab[match_id]
        rule = site_matcher.rule_map.get(label)
        category = rule.category if rule is not None else label
        (sides if category in LATERALITIES else sites).append((category, start, end))
    return sites, sides


def _section_categories(doc) -> list[tuple[int, int, str | None]]:
    """``(start, end, category)`` token ranges of the Sectionizer's sections, last assigned first.

    The Sectionizer sets ``token._.section`` section by section (a later one overwrites an earlier
    one); reading these ranges once per report is much cheaper than ``span._.section_category``
    (three extension look-ups) for every target.
    """
    return [(section.title_start, section.body_end, section.category) for section in reversed(doc._.sections)]


def _section_at(sections: list[tuple[int, int, str | None]], index: int) -> str | None:
    for start, end, category in sections:
        if start <= index < end:
            return category
    return None


def doc_mentions(doc, site_matcher, excluded_sections: Iterable[str]) -> list[FindingMention]:
    """Mentions of one report, plus one ``normal`` entry (positive when nothing abnormal is asserted).

    Targets in excluded sections (indication, history, comparison, technique) are dropped: a finding
    someone asks about is not a finding.
    """
    excluded = excluded_sections if isinstance(excluded_sections, (set, frozenset)) else set(excluded_sections)
    sections = _section_categories(doc)
    targets = []
    for ent in (doc.spans[TARGET_GROUP] if TARGET_GROUP in doc.spans else ()):
        section = _section_at(sections, ent.start)
        if (section or "") not in excluded:
            targets.append((ent, section))
    sites, sides = _anatomy(doc, site_matcher) if targets else ([], [])
    mentions: list[FindingMention] = []
    normal_evidence = None
    abnormal_asserted = False
    labelled_text = False
    for ent, section in targets:
        category = ent.label_
        if category == "pseudo":
            continue
        modifiers = ent._.modifiers
        categories = {modifier.category for modifier in modifiers}
        status = _status(categories)
        labelled_text = True
        if category == "normal":
            if status == "positive" and normal_evidence is None:
                normal_evidence = (ent, section)
            continue
        if status != "negative":
            abnormal_asserted = True
        if category == "abnormal":
            continue
        sentence = ent.sent
        in_sentence = lambda items: [item for item in items if sentence.start <= item[1] < sentence.end]  # noqa: E731
        site = None
        if category in SITED_FINDINGS:
            found = _nearest(ent, in_sentence(sites), SITE_WINDOW)
            site = found[0] if found else None
        side_candidates = in_sentence(sides)
        side = _nearest(ent, side_candidates, LATERALITY_WINDOW)
        rule = ent._.target_rule
        device_type = (rule.metadata or {}).get("device_type") if rule is not None else None
        mentions.append(FindingMention(
            finding=category, status=status, temporality=_temporality(ent, modifiers), site=site,
            laterality=side[0] if side else None, device_type=device_type, evidence=ent.text,
            start=ent.start_char, end=ent.end_char, section=section,
            modifiers=tuple(sorted(categories))))
    if labelled_text:
        mentions.append(_normal_entry(normal_evidence, abnormal_asserted))
    return mentions


def _normal_entry(evidence, abnormal_asserted: bool) -> FindingMention:
    status = "negative" if abnormal_asserted else "positive"
    if evidence is None:
        return FindingMention(finding="normal", status=status)
    span, section = evidence
    return FindingMention(finding="normal", status=status, evidence=span.text, start=span.start_char,
                          end=span.end_char, section=section)
