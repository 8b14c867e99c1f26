"""Rule-based scrubbing of identifiers from report text before it leaves radloop (Label Studio tasks).

:func:`redact_report` replaces dates, times, labelled record numbers, long digit runs, phone numbers,
e-mail addresses, URLs, DICOM-style names (``DOE^JOHN``), names that follow a title or a cue word
("Dr. Smith", "Dr. van der Berg", "Patient John Doe", "Pt Jo Roe", "his wife Jane Doe", "signed by ...",
"Attending: ...", "seen by Smith, John"), ages over 89
("92-year-old", "age 93", "94 y/o", "92 y.o", "a 92F", "History: 95 M"; 95-110 with F alone is a temperature,
"spiked a 102F") and street addresses ("1234 Oak Street", "12 Elm Ave, Apt 4", "9 OAK ST" ending a line or
clause) with typed placeholders (:data:`PLACEHOLDERS`).
It is conservative on purpose: clinical text (measurements, vertebral levels, ribs, laterality, findings,
devices "in place", "ST elevation", section headers, fractions and scores such as "3/5 strength", "L4/5",
"BI-RADS 4/5", "120/80", French sizes "14F", temperatures "101F", the "XXXX" masks of de-identified sources),
in lower, Title or UPPER case, is left alone.  A capitalised word after a cue is a name only when it is no
prose word ("Patient Appears Morbidly Obese" stays) and, after the weak cues ("Patient", "Pt", a relation,
"seen by", "doctor"),
only outside Title-cased prose.  So names written without a title or cue word are missed, and so are a
month/day without a year ("3/5") unless a date cue comes first ("on 3/5", "dated 3/5", "DOS: 3/5",
"Comparison: 3/5"; after a bare "prior" only before punctuation, a line end or a study word: "prior 3/5.",
"prior 4/5 fusion" stays), and an address with a weak street type (St, Place, Court, Dr ...) in running
text with nothing else that makes it one ("found at 4 Willow Dr. She ...").  It is not a certified
de-identification.

The rules are data (:data:`REDACTION_RULES`, in :mod:`radloop.labeling.redact_rules`, applied in order, each
over the previous one's output). Time is linear in the text's length, hostile input included: every repeat is
bounded, a match can begin only at the start of a token (a look-behind right after its first character), and
each pattern starts with a literal or character class so that the regex engine skips other positions fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping

from radloop.labeling.redact_rules import CASES, FRAGMENTS, PLACEHOLDERS, REDACTION_RULES, words

__all__ = ["PLACEHOLDERS", "REDACTION_RULES", "RedactionResult", "RedactionRule", "compile_rules",
           "redact_report"]
_RULE_KEYS = {"name", "kind", "pattern", "cues", "cue_case", "requires", "case_evidence", "provenance", "examples"}
_FRAGMENT = re.compile(r"\{([a-z_]+)\}")
_TITLE_WORD = re.compile(r"[A-Z](?<![\w'’-].)[a-z]")  # a word starting "Xx"
_LOWER_WORD = re.compile(r"[a-z](?<![\w'’-].)")  # a word starting in lower case


def _title_cased(text: str) -> bool:
    """Whether the text is Title-cased prose (8 or more "Xx" words, under one word in ten in lower case): there a
    capitalised word is no evidence of a name."""
    title = len(_TITLE_WORD.findall(text))
    return title >= 8 and len(_LOWER_WORD.findall(text)) * 10 < title


@dataclass(frozen=True)
class RedactionRule:
    """One compiled rule (see :data:`REDACTION_RULES` for the keys).

    ``regex`` has a ``keep`` group (what comes before the identifier, kept) when the rule has a ``phi``
    group; ``replacement`` is the ``re.sub`` template; ``case_evidence``: the rule takes capitalisation as
    evidence, so it is skipped on Title-cased prose.
    """

    name: str
    kind: str
    regex: re.Pattern
    replacement: str
    requires: str = ""
    case_evidence: bool = False
    provenance: str = ""
    examples: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, rule: Mapping) -> "RedactionRule":
        """Compile one rule dictionary.

        Raises:
            ValueError: unknown or missing keys, an unknown kind, case or fragment, a pattern that does not
                compile, a ``phi`` group that is not at the top level.
        """
        name = rule.get("name")
        unknown = set(rule) - _RULE_KEYS
        if unknown or not {"name", "kind", "pattern"} <= set(rule):
            raise ValueError(f"redaction rule {name!r}: needs name, kind, pattern; unknown keys {sorted(unknown)}")
        if rule["kind"] not in PLACEHOLDERS:
            raise ValueError(f"redaction rule {name!r}: kind {rule['kind']!r} not in {sorted(PLACEHOLDERS)}")
        if rule.get("cue_case", "any") not in CASES:
            raise ValueError(f"redaction rule {name!r}: cue_case must be one of {sorted(CASES)}")
        pieces = dict(FRAGMENTS)
        if rule.get("cues"):
            pieces["cues"] = words(rule["cues"], rule.get("cue_case", "any"))

        def piece(match: re.Match) -> str:
            if match.group(1) not in pieces:
                raise ValueError(f"redaction rule {name!r}: unknown fragment {{{match.group(1)}}}")
            return pieces[match.group(1)]

        source = _FRAGMENT.sub(piece, rule["pattern"])
        placeholder = PLACEHOLDERS[rule["kind"]]
        replacement = placeholder.replace("\\", "\\\\")
        try:
            if "(?P<phi>" in source:  # keep what comes before the identifier
                before, after = source.split("(?P<phi>", 1)
                re.compile(before), re.compile("(?P<phi>" + after)  # both whole: phi is at the top level
                source = f"(?P<keep>{before})(?P<phi>{after}"
                replacement = r"\g<keep>" + replacement
            regex = re.compile(source)
        except re.error as error:
            raise ValueError(f"redaction rule {name!r}: {error} (a phi group must be at the top level)") from None
        return cls(name=name, kind=rule["kind"], regex=regex, replacement=replacement,
                   requires=rule.get("requires", ""), case_evidence=bool(rule.get("case_evidence", False)),
                   provenance=rule.get("provenance", ""),
                   examples=tuple(rule.get("examples", ())))


def compile_rules(rules: Iterable[Mapping]) -> tuple[RedactionRule, ...]:
    """Compile rule dictionaries (in order); raises ``ValueError`` naming a bad rule."""
    return tuple(RedactionRule.from_dict(rule) for rule in rules)


@lru_cache(maxsize=1)
def _default_rules() -> tuple[RedactionRule, ...]:
    return compile_rules(REDACTION_RULES)


@dataclass(frozen=True)
class RedactionResult:
    """The scrubbed text and how many identifiers of each kind (:data:`PLACEHOLDERS` keys) were replaced."""

    text: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.counts)


def redact_report(text: str, rules: Iterable[RedactionRule] | None = None) -> RedactionResult:
    """Replace the identifiers the rules find with typed placeholders (``[DATE]``, ``[NAME]`` ...).

    Args:
        text: report text as stored.
        rules: compiled rules (default: :data:`REDACTION_RULES`).

    Returns:
        The redacted text and the count of replacements per kind (empty when nothing changed).
    """
    counts: dict[str, int] = {}
    title_cased = None  # computed when a rule needs it
    for rule in rules if rules is not None else _default_rules():
        if rule.requires and rule.requires not in text:
            continue
        if rule.case_evidence:
            title_cased = _title_cased(text) if title_cased is None else title_cased
            if title_cased:
                continue
        text, replaced = rule.regex.subn(rule.replacement, text)
        if replaced:
            counts[rule.kind] = counts.get(rule.kind, 0) + replaced
    return RedactionResult(text=text, counts=counts)
