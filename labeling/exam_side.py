"""The side of the examination ("XR WRIST LEFT 3 VIEWS", "EXAM: LEFT WRIST", "Right shoulder.") for findings
that name none.

A limb radiograph report often gives the side only in its title, its exam/technique line or a region header
leading the text ("Right shoulder. Healing scapular fracture.") and then writes "There is a distal radius
fracture."  The settings come from ``sites.json`` ``metadata.exam_side``
(:class:`ExamSide`): which sections count as the exam's description, which findings take the side, and which
sites and device types never do (a midline site, a chest device on a rib series).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from radloop.core.records import FindingMention
from radloop.core.vocabulary import DEVICE_TYPES, FINDINGS, SITES

__all__ = ["EXAM_SIDE_KEYS", "ExamSide", "exam_side", "first_line_end", "header_sides", "with_exam_side",
           "with_paragraph_side"]

#: The keys of ``metadata.exam_side``.
EXAM_SIDE_KEYS = frozenset({"sections", "findings", "not_sites", "device_types", "view_words", "header_sections",
                            "header_words", "same_site_only", "reason_words", "provenance"})
#: How many words after a side word a view word may stand ("left anterior oblique").
VIEW_WORD_GAP = 2
#: Tokens that end a region header ("Right shoulder." / "Left wrist:"); a line break ends one too.
HEADER_ENDS = frozenset({".", ":", ";"})
#: Punctuation that may stand inside a region header ("Right shoulder - 3 views").
HEADER_PUNCT = frozenset({"-", ",", "/", "(", ")"})
#: How far (words, same sentence) a side word may be from the site it locates, for :func:`with_paragraph_side`.
PARAGRAPH_SITE_WINDOW = 10


@dataclass(frozen=True)
class ExamSide:
    """Where the exam's side is read and which mentions take it.

    Args:
        sections: Section categories that describe the exam ("technique": "EXAM: LEFT WRIST").  The first line
            of the report also counts when it is in no section or one of these, and holds no finding ("XR WRIST
            LEFT 3 VIEWS" above "FINDINGS: ...").
        findings: Findings that take the exam's side when they have none of their own.
        not_sites: Sites that never take it (midline: "sternum", "spine").
        device_types: For a device, the types that take it (a pacemaker on a left rib series stays unsided).
        view_words: A side word followed by one of these (within :data:`VIEW_WORD_GAP` words) names a view, not
            the exam's side ("left lateral decubitus view", "right anterior oblique").
        header_sections: Section categories whose body may start with a region header ("FINDINGS: Right shoulder.
            ..."); the text before any header always may.
        header_words: Lower-case words a region header may hold besides side and site words and numbers ("Right
            shoulder, 3 views:").
        same_site_only: Sites that take a side from an earlier sentence (:func:`with_paragraph_side`) only from
            the same site, and give theirs only to it ("rib": a chest report's left clavicle is no rib's side).
        reason_words: Lower-case words of a reason for the exam ("Right shoulder pain."): a sentence with one gives
            no side to other sentences.
    """

    sections: frozenset[str] = frozenset()
    findings: frozenset[str] = frozenset()
    not_sites: frozenset[str] = frozenset()
    device_types: frozenset[str] = frozenset()
    view_words: frozenset[str] = frozenset()
    header_sections: frozenset[str] = frozenset()
    header_words: frozenset[str] = frozenset()
    same_site_only: frozenset[str] = frozenset()
    reason_words: frozenset[str] = frozenset()

    @classmethod
    def from_metadata(cls, settings: Mapping, where: str = "sites.json") -> "ExamSide":
        """Validate ``metadata.exam_side``; raise ``ValueError`` naming the bad key or value."""
        if not isinstance(settings, Mapping) or set(settings) - EXAM_SIDE_KEYS:
            raise ValueError(f"{where}: exam_side must be a mapping with keys {sorted(EXAM_SIDE_KEYS)}, got {settings!r}")
        allowed = {"findings": FINDINGS, "not_sites": SITES, "device_types": DEVICE_TYPES, "same_site_only": SITES}
        values = {}
        for key in ("sections", "findings", "not_sites", "device_types", "view_words", "header_sections",
                    "header_words", "same_site_only", "reason_words"):
            items = settings.get(key, [])
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError(f"{where}: exam_side.{key} must be a list of strings, got {items!r}")
            if key in ("view_words", "header_words", "reason_words") and any(item != item.lower() for item in items):
                raise ValueError(f"{where}: exam_side.{key} must be lower-case words, got {items!r}")
            unknown = set(items) - set(allowed.get(key, items))
            if unknown:
                raise ValueError(f"{where}: exam_side.{key} has unknown values {sorted(unknown)}")
            values[key] = frozenset(items)
        return cls(**values)


def first_line_end(doc) -> int | None:
    """The token index of the first line break after some text (``None`` when the report is one line)."""
    seen_text = False
    for token in doc:
        if "\n" in token.text or "\r" in token.text:
            if seen_text:
                return token.i
            continue
        if not token.is_space:
            seen_text = True
        if seen_text and ("\n" in token.whitespace_ or "\r" in token.whitespace_):
            return token.i + 1
    return None


def exam_side(doc, section_at, sides, finding_starts, settings: ExamSide, sites=()) -> str | None:
    """The one side the exam description names, else ``None`` (none, both, or "bilateral").

    Args:
        doc: The processed report.
        section_at: ``token index -> section category`` (``None`` outside any section).
        sides: Laterality matches ``(category, start, end)``.
        finding_starts: Token starts of the report's targets (a first line with one is no title).
        settings: :class:`ExamSide`.
        sites: Site matches ``(category, start, end)``, for region headers (:func:`header_sides`).
    """
    if not sides or not settings.findings:
        return None
    title_end = first_line_end(doc)
    if title_end is not None and any(start < title_end for start in finding_starts):
        title_end = None
    exam_sections = settings.sections | {None}  # the title: before any header, or in an exam section
    named = {category for category, start, end in sides
             if (section_at(start) in settings.sections
                 or (title_end is not None and start < title_end and section_at(start) in exam_sections))
             and not _names_view(doc, end, settings)}
    if sites:
        named |= header_sides(doc, section_at, sides, sites, finding_starts, settings)
    return next(iter(named)) if len(named) == 1 and named <= {"left", "right"} else None


def _names_view(doc, side_end: int, settings: ExamSide) -> bool:
    return any(token.lower_ in settings.view_words for token in doc[side_end:side_end + VIEW_WORD_GAP])


def header_sides(doc, section_at, sides, sites, finding_starts, settings: ExamSide) -> set[str]:
    """The sides the region headers name ("Right shoulder. Healing scapular fracture.", "Left wrist: ..."), when the
    first one leads the text or a section body; else none.

    A region header starts a sentence or a line in no section or one of ``settings.header_sections``, holds a side
    and a site word and else only ``settings.header_words``, numbers and some punctuation, and ends at ".", ":",
    ";", a line or sentence end.  A side of a view ("left anterior oblique") makes it none.  Every such header
    counts, so that "Left knee: ... Right ankle: ..." names both sides (and so none).
    """
    allowed = settings.header_sections | {None}
    side_at = {index: (category, end) for category, start, end in sides for index in range(start, end)}
    site_tokens = {index for _, start, end in sites for index in range(start, end)}
    titles = {index for section in doc._.sections for index in range(section.title_start, section.title_end)}
    leading = {_content_start(doc, 0, titles)} | {_content_start(doc, section.body_start, titles)
                                                   for section in doc._.sections}
    starts = {sentence.start for sentence in doc.sents}
    starts |= {token.i + 1 for token in doc if "\n" in token.text or "\n" in token.whitespace_
               or "\r" in token.text or "\r" in token.whitespace_}
    headers, finding_starts = [], set(finding_starts)
    for start in sorted({_content_start(doc, start, titles) for start in starts} - {None}):
        if section_at(start) in allowed:
            named = _header_at(doc, start, side_at, site_tokens, finding_starts, settings)
            if named:
                headers.append((start, named))
    if not headers or headers[0][0] not in leading:
        return set()
    return set().union(*(named for _, named in headers))


def _content_start(doc, index: int, titles: set[int]) -> int | None:
    """The first token at or after ``index`` that is no blank and no section title."""
    while index < len(doc) and (doc[index].is_space or index in titles):
        index += 1
    return index if index < len(doc) else None


def _header_at(doc, start: int, side_at, site_tokens, finding_starts, settings: ExamSide) -> set[str] | None:
    """The sides of the region header at ``start`` (see :func:`header_sides`), else ``None``."""
    named, has_site = set(), False
    for index in range(start, len(doc)):
        token = doc[index]
        if index > start and (token.is_sent_start or token.is_space):
            break
        if token.text in HEADER_ENDS:
            break
        if index in finding_starts:
            return None
        if index in side_at:
            category, end = side_at[index]
            if _names_view(doc, end, settings):
                return None
            named.add(category)
        elif index in site_tokens:
            has_site = True
        elif not (token.lower_ in settings.header_words or token.like_num or token.text in HEADER_PUNCT):
            return None
        if "\n" in token.whitespace_ or "\r" in token.whitespace_:
            break
    return named if named and has_site else None


def with_exam_side(mentions: list[FindingMention], side: str | None, settings: ExamSide) -> list[FindingMention]:
    """``mentions``, those of ``settings.findings`` without a side of their own given ``side``."""
    if side is None:
        return mentions
    return [replace(mention, laterality=side) if _takes_side(mention, settings) else mention for mention in mentions]


def _takes_side(mention: FindingMention, settings: ExamSide) -> bool:
    return (mention.laterality is None and mention.finding in settings.findings
            and mention.site not in settings.not_sites
            and (mention.finding != "device" or mention.device_type in settings.device_types))


def with_paragraph_side(doc, mentions: list[FindingMention], token_at: Mapping[int, int], section_at, sides, sites,
                        blocked: set[int], settings: ExamSide) -> list[FindingMention]:
    """``mentions``, those that would take the exam's side but have none given the one side that the earlier
    sentences of their paragraph (same section, no line break between) locate at a site: "Posterior fat pad sign on
    the left elbow. ... suspicious for an occult fracture." (elbow, left; a mention without a site also takes the
    site when those sentences name one).

    None when the paragraph names both sides or "bilateral" anywhere (each side word with a site in its sentence
    counts: "Left knee. Fracture of the patella. Right ankle. ..." gives none).  Sentences in ``blocked`` (their
    starts: an asserted chest finding, "left lower lobe atelectasis") or holding a ``settings.reason_words`` word
    ("Right shoulder pain.") give nothing; a site of ``settings.same_site_only`` gives and takes a side only at that
    site.  ``token_at`` maps a mention's start (characters) to its first token.
    """
    located: dict[int, list[tuple[str, str, bool]]] = {}
    out = []
    for mention in mentions:
        index = token_at.get(mention.start) if mention.start is not None else None
        if index is None or not _takes_side(mention, settings):
            out.append(mention)
            continue
        if index not in located:
            located[index] = _paragraph_sites(doc, index, section_at, sides, sites, blocked, settings)
        pairs = [(site, side, earlier) for site, side, earlier in located[index] if mention.site is None
                 or (site in settings.same_site_only) == (mention.site in settings.same_site_only)
                 and (site == mention.site or site not in settings.same_site_only)]
        named = {side for _, side, _ in pairs}
        earlier = [(site, side) for site, side, before in pairs if before]
        if not earlier or len(named) != 1 or not named <= {"left", "right"}:
            out.append(mention)
            continue
        named_sites = {site for site, _ in earlier}
        site = mention.site if mention.site is not None or len(named_sites) != 1 else next(iter(named_sites))
        out.append(replace(mention, laterality=next(iter(named)), site=site))
    return out


def _paragraph_sites(doc, index: int, section_at, sides, sites, blocked: set[int], settings: ExamSide):
    """``(site, side, earlier)`` for each side word located at a site in the paragraph of token ``index`` (its
    sentences in the same section with no line break between); ``earlier``: in a sentence before ``index``'s."""
    section, own = section_at(index), doc[index].sent
    sentences = list(doc.sents)
    position = next(number for number, sentence in enumerate(sentences) if sentence.start == own.start)
    first = last = position
    while first > 0 and _joined(doc, sentences[first - 1], sentences[first], section, section_at):
        first -= 1
    while last + 1 < len(sentences) and _joined(doc, sentences[last], sentences[last + 1], section, section_at):
        last += 1
    pairs = []
    for sentence in sentences[first:last + 1]:
        if sentence.start in blocked or any(token.lower_ in settings.reason_words for token in sentence):
            continue
        in_sentence = [site for site in sites if sentence.start <= site[1] < sentence.end
                       and site[0] not in settings.not_sites]
        for category, side_start, side_end in sides:
            if not sentence.start <= side_start < sentence.end or _names_view(doc, side_end, settings):
                continue
            near = [(_gap(site, side_start, side_end), site[0]) for site in in_sentence]
            near = [item for item in near if item[0] <= PARAGRAPH_SITE_WINDOW]
            if near:
                pairs.append((min(near)[1], category, sentence.start < own.start))
    return pairs


def _joined(doc, before, after, section, section_at) -> bool:
    """Whether two neighbouring sentences are of one paragraph: both in ``section``, no line break between."""
    return (section_at(before.start) == section == section_at(after.start)
            and not any(_breaks_line(token) for token in doc[before.end - 1:after.start + 1]))


def _gap(site, start: int, end: int) -> int:
    """Tokens between a site match and the token range ``start:end``."""
    return site[1] - end if site[1] >= end else start - site[2]


def _breaks_line(token) -> bool:
    return "\n" in token.text or "\r" in token.text or "\n" in token.whitespace_ or "\r" in token.whitespace_
