"""The side of the examination ("XR WRIST LEFT 3 VIEWS", "EXAM: LEFT WRIST") for findings that name none.

A limb radiograph report often gives the side only in its title or its exam/technique line and then writes
"There is a distal radius fracture."  The settings come from ``sites.json`` ``metadata.exam_side``
(:class:`ExamSide`): which sections count as the exam's description, which findings take the side, and which
sites and device types never do (a midline site, a chest device on a rib series).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from radloop.core.records import FindingMention
from radloop.core.vocabulary import DEVICE_TYPES, FINDINGS, SITES

__all__ = ["EXAM_SIDE_KEYS", "ExamSide", "exam_side", "first_line_end", "with_exam_side"]

#: The keys of ``metadata.exam_side``.
EXAM_SIDE_KEYS = frozenset({"sections", "findings", "not_sites", "device_types", "view_words", "provenance"})
#: How many words after a side word a view word may stand ("left anterior oblique").
VIEW_WORD_GAP = 2


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
    """

    sections: frozenset[str] = frozenset()
    findings: frozenset[str] = frozenset()
    not_sites: frozenset[str] = frozenset()
    device_types: frozenset[str] = frozenset()
    view_words: frozenset[str] = frozenset()

    @classmethod
    def from_metadata(cls, settings: Mapping, where: str = "sites.json") -> "ExamSide":
        """Validate ``metadata.exam_side``; raise ``ValueError`` naming the bad key or value."""
        if not isinstance(settings, Mapping) or set(settings) - EXAM_SIDE_KEYS:
            raise ValueError(f"{where}: exam_side must be a mapping with keys {sorted(EXAM_SIDE_KEYS)}, got {settings!r}")
        allowed = {"findings": FINDINGS, "not_sites": SITES, "device_types": DEVICE_TYPES}
        values = {}
        for key in ("sections", "findings", "not_sites", "device_types", "view_words"):
            items = settings.get(key, [])
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError(f"{where}: exam_side.{key} must be a list of strings, got {items!r}")
            if key == "view_words" and any(item != item.lower() for item in items):
                raise ValueError(f"{where}: exam_side.view_words must be lower-case words, got {items!r}")
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


def exam_side(doc, section_at, sides, finding_starts, settings: ExamSide) -> str | None:
    """The one side the exam description names, else ``None`` (none, both, or "bilateral").

    Args:
        doc: The processed report.
        section_at: ``token index -> section category`` (``None`` outside any section).
        sides: Laterality matches ``(category, start, end)``.
        finding_starts: Token starts of the report's targets (a first line with one is no title).
        settings: :class:`ExamSide`.
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
             and not any(token.lower_ in settings.view_words for token in doc[end:end + VIEW_WORD_GAP])}
    return next(iter(named)) if len(named) == 1 and named <= {"left", "right"} else None


def with_exam_side(mentions: list[FindingMention], side: str | None, settings: ExamSide) -> list[FindingMention]:
    """``mentions``, those of ``settings.findings`` without a side of their own given ``side``."""
    if side is None:
        return mentions
    return [replace(mention, laterality=side) if _takes_side(mention, settings) else mention for mention in mentions]


def _takes_side(mention: FindingMention, settings: ExamSide) -> bool:
    return (mention.laterality is None and mention.finding in settings.findings
            and mention.site not in settings.not_sites
            and (mention.finding != "device" or mention.device_type in settings.device_types))
