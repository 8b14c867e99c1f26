"""Turn a processed spaCy ``Doc`` into :class:`~radloop.core.records.FindingMention` records."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from radloop.core.records import FindingMention

from .exam_side import ExamSide, exam_side, with_exam_side, with_paragraph_side
from .pipeline import TARGET_GROUP, site_matches
from .pipeline import gap_word as _gap_word
from .sizes import stated_size_cm

#: ConText categories -> effect.
NEGATION = frozenset({"NEGATED_EXISTENCE"})
UNCERTAINTY = frozenset({"POSSIBLE_EXISTENCE", "HYPOTHETICAL"})
#: A finding only supposed ("if there is concern for bony abnormality", "recommend CT to evaluate for a
#: mass") is uncertain but asserts nothing: it does not make the report abnormal.
HYPOTHETICAL = frozenset({"HYPOTHETICAL"})
OLD = "OLD"
ACUTE = "ACUTE"

#: How far (tokens, same sentence) a site / laterality word may be from its finding.
SITE_WINDOW = 14
LATERALITY_WINDOW = 10
#: Findings that are anatomy-agnostic words; a site attaches to them (chest findings keep laterality only).
SITED_FINDINGS = frozenset({"fracture", "dislocation", "foreign_body", "device"})
#: Findings that have no side: a laterality word near them belongs to something else ("cardiomegaly with
#: right mediastinal shift", "the heart is mildly enlarged ... more prominent on the left").
UNSIDED_FINDINGS = frozenset({"cardiomegaly"})
#: A laterality word after a finding and followed, within this many words (no punctuation), by the word
#: of another emitted finding describes that finding ("left lower lobe atelectasis and right pleural
#: effusion": "right" is the effusion's side, not the atelectasis').  One before the finding is shared
#: ("right shoulder fracture or dislocation", "left pleural effusion with adjacent atelectasis"), and so
#: is one after two coordinated findings ("atelectasis or infiltrate in the right base").
OWN_SIDE_GAP = 3
#: Target categories that never take a laterality word from another finding (not emitted as findings).
NOT_EMITTED = frozenset({"abnormal", "pseudo", "normal"})
#: Sites joined by these words share one finding word ("fracture of the right radius and left ulna"):
#: the finding gets one mention per site, each with its own laterality.
SITE_CONJUNCTIONS = frozenset({"and", "or", ",", "&", "/"})
#: Part-of-bone words that may follow a site before the conjunction ("right mandibular angle and left parasymphysis",
#: "left radial shaft and right ulnar shaft"); only between two coordinated sites.
SITE_PART_WORDS = frozenset({"angle", "body", "bodies", "neck", "shaft", "shafts", "head", "heads", "base", "bases",
                             "tip", "process", "condyle", "styloid", "diaphysis", "metaphysis", "epiphysis", "cortex"})
#: A site followed by one of these starts a clause ("... of the humerus and the scapula is intact"),
#: so it is not coordinated with the site before it.
SITE_CLAUSE_VERBS = frozenset({"is", "are", "was", "were", "appears", "appear", "remains", "remain", "looks",
                               "look", "shows", "show", "demonstrates", "has", "have", "seems", "seem"})
#: Tokens that keep a site beyond :data:`SITE_WINDOW` from a finding (:func:`_unbroken_site`).
CLAUSE_MARKS = frozenset({",", ";", ":", "(", ")", "[", "]"})
#: A side word after these words ("fracture on the right with a broken nail") locates what comes before it,
#: so it is no side of the finding that follows.
TRAILING_SIDE_BEFORE = ("on", "the")


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


def _absent_sign(modifier, span, negated_spans: list[tuple[int, int]]) -> bool:
    """Whether an OLD/ACUTE trigger lies inside another target that is negated: a sign said to be absent is no
    evidence of age ("fracture with no callus formation": the callus target is negated, so its "callus" makes
    nothing old)."""
    if modifier.category not in (OLD, ACUTE):
        return False
    start, end = modifier.modifier_span
    return any(low <= start and end <= high and (low, high) != (span.start, span.end) for low, high in negated_spans)


def _other_finding_age(modifier, span, others: list[tuple[int, int]]) -> bool:
    """Whether an OLD/ACUTE trigger stands nearer another finding's words than the device ``span``, or in front of a
    later finding's words (no conjunction or punctuation between): "healing fracture of the radius with plate and
    screws" and "new PICC and healed rib fractures" date the fractures, not the plate or the line."""
    if modifier.category not in (OLD, ACUTE):
        return False
    start, end = modifier.modifier_span
    doc = span.doc

    def gap(low: int, high: int) -> int:
        return low - end if low >= end else start - high

    def leads(low: int) -> bool:
        return span.end <= start and low >= end and not any(
            doc[index].is_punct or doc[index].lower_ in SITE_CONJUNCTIONS for index in range(end, low))

    return any(gap(low, high) <= gap(span.start, span.end) or leads(low) for low, high in others)


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


def _own_side(doc, site_start: int, sides: list[tuple[str, int, int]]) -> str | None:
    """The laterality word in front of a site ("left" in "and the left distal ulna"), if any."""
    side_at = {end: (category, start) for category, start, end in sides}
    index = site_start
    while index > 0:
        if index in side_at:
            return side_at[index][0]
        if not _gap_word(doc[index - 1]):
            return None
        index -= 1
    return None


def _coordinated(doc, first: tuple[str, int, int], second: tuple[str, int, int], sides) -> bool:
    """Whether two sites (in text order) are joined like "radius and left ulna": a conjunction, and
    only laterality words, determiners, positions and ordinals between them; the second site not the
    subject of a clause ("and the scapula is intact")."""
    inside_side = {index for _, start, end in sides for index in range(start, end)}
    between = range(first[2], second[1])
    if not between or (second[2] < len(doc) and doc[second[2]].lower_ in SITE_CLAUSE_VERBS):
        return False
    conjunction = False
    for index in between:
        word = doc[index].lower_
        if word in SITE_CONJUNCTIONS:
            conjunction = True
        elif index not in inside_side and not _gap_word(doc[index]) and not (word in SITE_PART_WORDS and not conjunction):
            return False
    return conjunction


def _site_mentions(doc, mention: FindingMention, site, sites, sides) -> list[FindingMention]:
    """More mentions for the sites coordinated with ``site`` ("fracture of the right radius and left ulna").

    Each such site takes the laterality word in front of it, else that of the site before it; a site
    before ``site`` with none takes the finding's laterality, unless that is ``site``'s own word.
    """
    first = last = sites.index(site)
    while last + 1 < len(sites) and _coordinated(doc, sites[last], sites[last + 1], sides):
        last += 1
    while first > 0 and _coordinated(doc, sites[first - 1], sites[first], sides):
        first -= 1
    chain = sites[first:last + 1]
    before_found = _own_side(doc, site[1], sides) is None
    extra, seen = [], {(mention.site, mention.laterality)}
    previous = None
    for candidate in chain:
        listed = _listed_sides(doc, candidate[1], sides)
        if candidate == site:
            previous = mention.laterality
        else:
            side = _own_side(doc, candidate[1], sides)
            if side is None:
                side = previous if candidate != chain[0] else (mention.laterality if before_found else None)
            previous = side
            listed.insert(0, side)
        for side in listed:
            if (candidate[0], side) not in seen:
                seen.add((candidate[0], side))
                extra.append(replace(mention, site=candidate[0], laterality=side))
    return extra


def _listed_sides(doc, site_start: int, sides: list[tuple[str, int, int]]) -> list[str]:
    """The sides listed in front of a site when there are several: "left" and "right" in "the left 5th and right 6th
    ribs" (one site word, a side each; ordinals, positions and conjunctions between); else none."""
    side_at = {end: (category, start) for category, start, end in sides}
    index, found = site_start, []
    while index > 0:
        if index in side_at:
            found.append(side_at[index][0])
            index = side_at[index][1]
        elif _gap_word(doc[index - 1]) or doc[index - 1].lower_ in SITE_CONJUNCTIONS:
            index -= 1
        else:
            break
    return found if len(found) > 1 else []


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


def doc_mentions(doc, site_matcher, excluded_sections: Iterable[str],
                 exam_settings: ExamSide | None = None) -> list[FindingMention]:
    """Mentions of one report, plus one ``normal`` entry (positive when nothing abnormal is asserted:
    positive or possible; a merely hypothetical finding asserts nothing).

    Targets in excluded sections (indication, history, comparison, technique) are dropped: a finding
    someone asks about is not a finding.  With ``exam_settings``, a finding without a side of its own takes
    the one side the exam's title or technique line names (:mod:`~radloop.labeling.exam_side`).
    """
    excluded = excluded_sections if isinstance(excluded_sections, (set, frozenset)) else set(excluded_sections)
    sections = _section_categories(doc)
    targets = []
    for ent in (doc.spans[TARGET_GROUP] if TARGET_GROUP in doc.spans else ()):
        section = _section_at(sections, ent.start)
        if (section or "") not in excluded:
            targets.append((ent, section))
    sites, sides = site_matches(doc, site_matcher) if targets else ([], [])
    emitted_starts = {ent.start for ent, _ in targets if ent.label_ not in NOT_EMITTED}
    target_starts = {ent.start for ent, _ in targets}
    finding_spans = [(ent.start, ent.end) for ent, _ in targets if ent.label_ not in NOT_EMITTED | {"device"}]
    negated_spans = [(ent.start, ent.end) for ent, _ in targets
                     if any(modifier.category in NEGATION for modifier in ent._.modifiers)]
    side_owner = _side_owners(doc, sides, emitted_starts, {start: end for _, start, end in sites}) if sides else {}
    mentions: list[FindingMention] = []
    normal_evidence = None
    abnormal_asserted = False
    labelled_text = False
    blocked: set[int] = set()
    token_at: dict[int, int] = {}
    for ent, section in targets:
        category = ent.label_
        if category == "pseudo":
            continue
        rule = ent._.target_rule
        metadata = (rule.metadata or {}) if rule is not None else {}
        if "finding_by_size" in metadata:
            category = _finding_by_size(ent, category, metadata["finding_by_size"])
        beside = metadata.get("beside_sites")
        if beside and any(site in beside["sites"] and ent.sent.start <= start < ent.sent.end for site, start, _ in sites):
            category = beside["finding"]  # "Left knee: effusion." is a joint effusion, no pleural one
        modifiers = [modifier for modifier in ent._.modifiers if not _absent_sign(modifier, ent, negated_spans)]
        if category == "device":
            modifiers = [modifier for modifier in modifiers if not _other_finding_age(modifier, ent, finding_spans)]
        categories = {modifier.category for modifier in modifiers}
        status = _status(categories)
        labelled_text = True
        if category == "normal":
            if status == "positive" and normal_evidence is None:
                normal_evidence = (ent, section)
            continue
        if status == "positive" or (status == "uncertain" and not categories & HYPOTHETICAL):
            abnormal_asserted = True
            if category not in SITED_FINDINGS and category != "abnormal":
                blocked.add(ent.sent.start)  # a chest finding's side ("left pleural effusion") locates no bone
        if category == "abnormal":
            continue
        sentence = ent.sent
        in_sentence = lambda items: [item for item in items if sentence.start <= item[1] < sentence.end]  # noqa: E731
        found = None
        if category in SITED_FINDINGS:
            site_candidates = _after_label(doc, ent, in_sentence(sites))
            found = _nearest(ent, site_candidates, SITE_WINDOW) or _unbroken_site(doc, ent, site_candidates, target_starts)
        device_type = _device_type(ent, metadata)
        at_sites = metadata.get("at_sites")
        if at_sites and found is not None and found[0] in at_sites["sites"]:
            # "pins in the right tibia" are hardware, a pin in the foot's soft tissues a foreign body
            category, device_type = at_sites["finding"], at_sites.get("device_type", device_type)
        side_candidates = [item for item in in_sentence(sides)
                           if item[1] < ent.start or side_owner.get(item[1], ent.start) == ent.start]
        side = None if category in UNSIDED_FINDINGS else _nearest(ent, side_candidates, LATERALITY_WINDOW)
        if side is None and found is not None:  # "fracture ... along the medial aspect ... of the left tibia"
            side = _site_side(doc, found, side_candidates)
        mention = FindingMention(
            finding=category, status=status, temporality=_temporality(ent, modifiers),
            site=found[0] if found else None, laterality=side[0] if side else None, device_type=device_type,
            evidence=ent.text, start=ent.start_char, end=ent.end_char, section=section,
            modifiers=tuple(sorted(categories)))
        mentions.append(mention)
        token_at[mention.start] = ent.start
        if found is not None:
            mentions += _site_mentions(doc, mention, found, site_candidates, side_candidates)
        # a phrase naming two findings ("fracture-dislocation"): the same evidence for each
        for also in metadata.get("also_findings", ()):
            mentions += [replace(extra, finding=also) for extra in mentions if extra.start == mention.start
                         and extra.finding == category]
    if exam_settings is not None and mentions:
        side = exam_side(doc, lambda index: _section_at(sections, index), sides, emitted_starts, exam_settings, sites)
        mentions = with_exam_side(mentions, side, exam_settings)
        mentions = with_paragraph_side(doc, mentions, token_at, lambda index: _section_at(sections, index), sides, sites,
                                       blocked, exam_settings)
    if labelled_text:
        mentions.append(_normal_entry(normal_evidence, abnormal_asserted))
    return mentions


def _unbroken_site(doc, span, candidates: list[tuple[str, int, int]], target_starts: set[int]):
    """The first site after ``span`` beyond :data:`SITE_WINDOW` when no clause mark (",", ";", ":", brackets) and no
    other target stands between: "a fracture involving the cortex along the medial aspect of the distal metaphysis of
    the left tibia" (17 words) is the tibia's."""
    after = [candidate for candidate in candidates if candidate[1] >= span.end]
    if not after:
        return None
    site = after[0]
    between = range(span.end, site[1])
    if any(doc[index].text in CLAUSE_MARKS or index in target_starts for index in between):
        return None
    return site


def _site_side(doc, site, side_candidates: list[tuple[str, int, int]]):
    """The side candidate right in front of ``site`` (its own side word), else ``None``."""
    side_ends = {candidate[2]: candidate for candidate in side_candidates}
    index = site[1]
    while index > 0 and index not in side_ends and _gap_word(doc[index - 1]):
        index -= 1
    return side_ends.get(index)


def _after_label(doc, span, candidates: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The sites after the last ":" before ``span`` in its sentence, when there are any: a region label
    ("Left hand: fracture at the base of the proximal phalanx of the ring finger") yields to the site the
    sentence names (finger, not hand); its side still counts."""
    colon = next((index for index in range(span.start - 1, span.sent.start - 1, -1) if doc[index].text == ":"), None)
    if colon is None:
        return candidates
    after = [candidate for candidate in candidates if candidate[1] > colon]
    return after or candidates


def _finding_by_size(span, category: str, by_size: dict) -> str:
    """``by_size["finding"]`` when the sentence gives the span a size of at most ``by_size["at_most_cm"]`` (largest
    dimension, right before or after its words: "a 2.6 cm masslike density" is a nodule), else ``category``."""
    sentence, text = span.sent, span.doc.text
    size = stated_size_cm(text[sentence.start_char:span.start_char], text[span.end_char:sentence.end_char])
    return by_size["finding"] if size is not None and size <= by_size["at_most_cm"] else category


def _device_type(span, metadata: dict) -> str | None:
    """``metadata.device_type``, or the type of the last word of ``span`` in ``metadata.device_type_by_word``
    ("fracture of the superior-most sternotomy XXXX": sternotomy -> sternotomy_wires)."""
    by_word = metadata.get("device_type_by_word")
    if by_word:
        for token in reversed(span):
            if token.lower_ in by_word:
                return by_word[token.lower_]
    return metadata.get("device_type")


def _side_owners(doc, sides, emitted_starts, site_ends: dict[int, int] | None = None) -> dict[int, int]:
    """``side start -> start of the emitted finding it stands in front of``, for the laterality words
    followed within :data:`OWN_SIDE_GAP` words (no punctuation between) by a finding's words.  A side word
    right before a site word is that site's: the finding right after the site takes it ("right hip fracture"),
    else it is shared by the findings around it ("healed fracture of the right clavicle with callus formation",
    "fracture of the right hip status post ORIF": both right).  One after "on the" locates what comes before it
    ("fracture on the right with a broken nail": both right)."""
    owners = {}
    site_ends = site_ends or {}
    for _, start, end in sides:
        if end in site_ends:
            if site_ends[end] in emitted_starts:
                owners[start] = site_ends[end]
            continue
        if start >= 2 and (doc[start - 2].lower_, doc[start - 1].lower_) == TRAILING_SIDE_BEFORE:
            continue
        for index in range(end, min(end + OWN_SIDE_GAP + 1, len(doc))):
            if index in emitted_starts:
                owners[start] = index
                break
            if doc[index].is_punct or doc[index].is_sent_start:
                break
    return owners


def _normal_entry(evidence, abnormal_asserted: bool) -> FindingMention:
    status = "negative" if abnormal_asserted else "positive"
    if evidence is None:
        return FindingMention(finding="normal", status=status)
    span, section = evidence
    return FindingMention(finding="normal", status=status, evidence=span.text, start=span.start_char,
                          end=span.end_char, section=section)
