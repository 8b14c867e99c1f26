"""Turn a processed spaCy ``Doc`` into :class:`~radloop.core.records.FindingMention` records."""

from __future__ import annotations

from typing import Iterable

from radloop.core.records import FindingMention
from radloop.core.vocabulary import LATERALITIES

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


def doc_mentions(doc, site_matcher, excluded_sections: Iterable[str]) -> list[FindingMention]:
    """Mentions of one report, plus one ``normal`` entry (positive when nothing abnormal is asserted).

    Targets in excluded sections (indication, history, comparison, technique) are dropped: a finding
    someone asks about is not a finding.
    """
    excluded = set(excluded_sections)
    targets = [ent for ent in doc.ents if (ent._.section_category or "") not in excluded]
    sites, sides = _anatomy(doc, site_matcher) if targets else ([], [])
    mentions: list[FindingMention] = []
    normal_evidence = None
    abnormal_asserted = False
    labelled_text = False
    for ent in targets:
        category = ent.label_
        if category == "pseudo":
            continue
        modifiers = ent._.modifiers
        categories = {modifier.category for modifier in modifiers}
        status = _status(categories)
        section = ent._.section_category
        labelled_text = True
        if category == "normal":
            if status == "positive" and normal_evidence is None:
                normal_evidence = ent
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
    return FindingMention(finding="normal", status=status, evidence=evidence.text, start=evidence.start_char,
                          end=evidence.end_char, section=evidence._.section_category)
