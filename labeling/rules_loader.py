"""Load the labeller's rule files (package data) through medspacy's own rule classes.

Every rule file in ``radloop.labeling.rules`` is JSON with a file-level ``metadata`` block and one
list of rules: ``target_rules`` (``targets_*.json``), ``context_rules`` (``context.json``),
``section_rules`` (``sections.json``) or ``site_rules`` (``sites.json``).  Rules are built with
``TargetRule.from_dict`` / ``ConTextRule.from_dict`` / ``SectionRule.from_dict``, which reject
unknown keys.  Callbacks are named in a rule's ``metadata`` and resolved via
:data:`radloop.labeling.callbacks.CALLBACKS`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

from radloop.core.vocabulary import DEVICE_TYPES, FINDINGS, LATERALITIES, SITES

from .callbacks import get_callback
from .exam_side import ExamSide

RULES_PACKAGE = "radloop.labeling.rules"

#: Target categories that are not findings of the vocabulary but steer the labeller.
INTERNAL_CATEGORIES = ("abnormal", "pseudo")
#: A token pattern that spells out at most this many phrases is matched as those phrases.
MAX_PHRASES = 3_000
#: A first-token word set of a token pattern up to this size is split into one pattern per word.
MAX_EXPANDED_WORDS = 8


@dataclass
class RuleSet:
    """All rules of the labeller plus the settings carried in rule-file metadata."""

    target_rules: list = field(default_factory=list)
    context_rules: list = field(default_factory=list)
    section_rules: list = field(default_factory=list)
    site_rules: list = field(default_factory=list)
    excluded_sections: frozenset[str] = frozenset()
    #: Section categories whose headers count only at the start of a line or after a sentence end.
    line_start_sections: frozenset[str] = frozenset()
    #: Where the exam's side is read and which findings take it (``sites.json`` ``metadata.exam_side``).
    exam_side: ExamSide | None = None
    files: tuple[str, ...] = ()
    version: str = ""


def rule_files() -> list[str]:
    """Names of the rule files in the package (sorted; case tables excluded)."""
    root = resources.files(RULES_PACKAGE)
    return sorted(item.name for item in root.iterdir()
                  if item.is_file() and item.name.endswith((".json", ".yaml", ".yml", ".tsv")))


#: Bump when labelling code (not a rule file) changes which mentions come out, e.g. sentence splitting in
#: ``pipeline.py``: stored weak labels are tagged with the version, and ``label-reports catalog`` relabels
#: only reports without rows of the current one.  2: ".." / "..." end a sentence.  3: only real HTML
#: markup is blanked ("<2 mm ... >10 degrees" stays text); coordinated sites give a mention each;
#: laterality rules may need a site after them (``needs_site_after``).  4: ``line_start_sections`` headers
#: count only at a line or sentence start; a hypothetical finding no longer vetoes *normal*; laterality
#: ``not_before`` words.  5: target metadata ``finding_by_size`` / ``at_sites``; a side word right before a site
#: is shared by the findings around it.  6: a finding without a side takes the exam's one side (``sites.json``
#: ``metadata.exam_side``); an OLD/ACUTE trigger inside a negated target is no evidence ("no callus formation").
#: 7: a region header leading the text or a findings/impression body ("Right shoulder. Healing scapular fracture.")
#: gives the exam's side too (``exam_side.header_sections`` / ``header_words``).  8: a site before a ":" label in the
#: sentence yields to one after it ("Left hand: fracture of the ... ring finger"); site rule ``of_sites`` ("phalanx of
#: the great toe" is the foot); "on the right" after a finding is no side of the next finding.  9: a side/site from an
#: earlier sentence of the paragraph (``exam_side.with_paragraph_side``); a site beyond the window with nothing between;
#: part words between coordinated sites, several sides before one site; a device ignores a trigger nearer a finding.
#: 10: target metadata ``beside_sites`` (an unsited finding whose sentence names one of those sites is another one).
PIPELINE_REVISION = 10


def rules_version() -> str:
    """A short hash over the names and bytes of every rule file and the pipeline revision: changes whenever
    a rule (or the way rules are applied) changes."""
    root = resources.files(RULES_PACKAGE)
    digest = hashlib.sha256(f"pipeline-{PIPELINE_REVISION}".encode())
    for name in rule_files():
        digest.update(name.encode())
        digest.update(root.joinpath(name).read_bytes())
    return "rules-" + digest.hexdigest()[:12]


def _read(name: str) -> dict:
    text = resources.files(RULES_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"rule file {name}: invalid JSON ({error})") from None


def pattern_phrases(pattern, limit: int = MAX_PHRASES) -> list[tuple[str, ...]] | None:
    """The word sequences a token pattern matches, when it is a short finite list of literal words.

    A pattern qualifies when every token is ``{"LOWER": word | {"IN": words}}`` (or ``ORTH`` with
    caseless words such as ``"-"``), optionally with ``"OP": "?"``, and it spells out at most
    ``limit`` sequences.  spaCy's token ``Matcher`` pays for every pattern at every token of every
    report; its ``PhraseMatcher`` looks phrases up by hash, so matching the sequences as phrases
    is much faster and finds exactly the same spans.  Returns ``None`` for any other pattern.
    """
    if not isinstance(pattern, list) or not pattern:
        return None
    options: list[list[str | None]] = []
    for token in pattern:
        attrs = set(token) - {"OP"}
        if len(attrs) != 1 or not attrs <= {"LOWER", "ORTH"} or token.get("OP") not in (None, "?"):
            return None
        attr = attrs.pop()
        value = token[attr]
        words = [value] if isinstance(value, str) else value.get("IN") if isinstance(value, dict) and set(value) == {"IN"} else None
        # LOWER words must be lower case and ORTH words caseless, else phrase matching on LOWER differs
        if not words or not all(isinstance(word, str) and word == word.lower() and
                                (attr == "LOWER" or word == word.upper()) for word in words):
            return None
        options.append(list(dict.fromkeys(words)) + ([None] if token.get("OP") == "?" else []))
    if math.prod(len(words) for words in options) > limit:
        return None
    sequences = (tuple(word for word in combination if word is not None) for combination in itertools.product(*options))
    return [sequence for sequence in dict.fromkeys(sequences) if sequence]


def compile_phrases(rule_dict: dict, tokenize: Callable[[str], list[str]] | None) -> list[dict] | None:
    """Rewrite a finite token-pattern rule as one literal (phrase) rule per word sequence it matches.

    ``tokenize`` (text -> token texts, the pipeline's tokenizer) must keep every word one token, so
    that phrase and pattern match the same token sequences; otherwise, or without ``tokenize``,
    returns ``None`` and the rule keeps its token pattern.  The authored name is kept in
    ``metadata.rule`` (``literal`` becomes the phrase).
    """
    phrases = pattern_phrases(rule_dict.get("pattern")) if tokenize is not None else None
    if phrases is None:
        return None
    words = {word for phrase in phrases for word in phrase}
    if any(tokenize(word) != [word] for word in words):
        return None
    metadata = dict(rule_dict.get("metadata") or {}, rule=rule_dict.get("literal"))
    return [dict(rule_dict, literal=" ".join(phrase), pattern=None, metadata=metadata) for phrase in phrases]


def expand_first_token(rule_dict: dict, depth: int = 3) -> list[dict]:
    """Split a token pattern whose first token is a word set into one pattern per word.

    spaCy evaluates ``{"LOWER": {"IN": [...]}}`` in Python at every token, but ``{"LOWER": "word"}``
    in C; since every pattern is tried at every token, a plain first token makes the matcher faster,
    as long as the set is small: each extra pattern also costs at every token (measured on Open-i:
    sets of up to :data:`MAX_EXPANDED_WORDS` gain, an 11-word set loses).  The rules match exactly
    the same spans.  A leading optional token (``"OP": "?"``) expands to "each word" plus "absent".
    """
    pattern = rule_dict.get("pattern")
    if not isinstance(pattern, list) or not pattern or depth == 0:
        return [rule_dict]
    first, rest = pattern[0], pattern[1:]
    words = first.get("LOWER", {}).get("IN") if isinstance(first.get("LOWER"), dict) else None
    if (words is None or len(words) > MAX_EXPANDED_WORDS or set(first) - {"LOWER", "OP"}
            or first.get("OP") not in (None, "?")):
        return [rule_dict]
    expanded = [dict(rule_dict, pattern=[{"LOWER": word}] + rest) for word in words]
    if first.get("OP") == "?" and rest:
        expanded += expand_first_token(dict(rule_dict, pattern=rest), depth - 1)
    return expanded


def _attach_callbacks(rule, name: str) -> None:
    metadata = rule.metadata or {}
    if "on_modifies" in metadata:
        rule.on_modifies = get_callback(metadata["on_modifies"])
    if "on_match" in metadata:
        rule.on_match = get_callback(metadata["on_match"])


def _check_phrase_conflicts(rules: list, seen: dict, where: str) -> None:
    """Reject a phrase that two rules give different outcomes (category, device type).

    Which of two rules matching the same span wins depends on spaCy's internal hash order, so
    the result would change whenever unrelated rules are added.
    """
    for rule in rules:
        if rule.pattern is not None:
            continue
        phrase = " ".join(rule.literal.lower().split())
        metadata = rule.metadata or {}
        outcome = (rule.category, metadata.get("device_type"), tuple(sorted((metadata.get("device_type_by_word") or {}).items())),
                   tuple(sorted((metadata.get("finding_by_size") or {}).items())), repr(metadata.get("at_sites")),
                   repr(metadata.get("beside_sites")))
        first = seen.setdefault(phrase, (where, outcome))
        if first[1] != outcome:
            raise ValueError(f"rule file {where}: phrase {phrase!r} is {outcome} but {first[0]} makes it {first[1]}")


def _check_finding_by_size(by_size, where: str) -> None:
    """``finding_by_size``: ``{"at_most_cm": <positive number>, "finding": <a vocabulary finding>}``."""
    if (not isinstance(by_size, dict) or set(by_size) != {"at_most_cm", "finding"} or by_size["finding"] not in FINDINGS
            or isinstance(by_size["at_most_cm"], bool) or not isinstance(by_size["at_most_cm"], (int, float))
            or by_size["at_most_cm"] <= 0):
        raise ValueError(f"rule file {where}: finding_by_size must be {{\"at_most_cm\": <cm > 0>, \"finding\": "
                         f"<one of FINDINGS>}}, got {by_size!r}")


def _check_at_sites(at_sites, category: str, where: str) -> None:
    """``at_sites``: ``{"sites": [SITES], "finding": <a sited finding>, "device_type": <DEVICE_TYPES, devices
    only>}`` on a sited (fracture, dislocation, device, foreign body) rule."""
    from .mentions import SITED_FINDINGS

    valid = (isinstance(at_sites, dict) and {"sites", "finding"} <= set(at_sites) <= {"sites", "finding", "device_type"}
             and isinstance(at_sites["sites"], list) and at_sites["sites"] and set(at_sites["sites"]) <= set(SITES)
             and at_sites["finding"] in SITED_FINDINGS and category in SITED_FINDINGS
             and ("device_type" not in at_sites or (at_sites["finding"] == "device"
                                                    and at_sites["device_type"] in DEVICE_TYPES)))
    if not valid:
        raise ValueError(f"rule file {where}: at_sites must be {{\"sites\": [SITES], \"finding\": <fracture, "
                         f"dislocation, device or foreign_body>, \"device_type\": <DEVICE_TYPES, for a device>}} on "
                         f"such a rule, got {at_sites!r} on a {category!r} rule")


def _check_beside_sites(beside, category: str, where: str) -> None:
    """``beside_sites``: ``{"sites": [SITES], "finding": <a vocabulary finding or "abnormal">}`` on an unsited
    rule: the finding it names when its sentence names one of those sites ("Left knee: effusion." is a joint
    effusion, no pleural one)."""
    from .mentions import SITED_FINDINGS

    valid = (isinstance(beside, dict) and set(beside) == {"sites", "finding"} and isinstance(beside["sites"], list)
             and beside["sites"] and set(beside["sites"]) <= set(SITES)
             and (beside["finding"] in FINDINGS or beside["finding"] == "abnormal") and category not in SITED_FINDINGS)
    if not valid:
        raise ValueError(f"rule file {where}: beside_sites must be {{\"sites\": [SITES], \"finding\": <one of FINDINGS "
                         f"or abnormal>}} on an unsited rule, got {beside!r} on a {category!r} rule")


def _check_site_metadata(rule, where: str) -> None:
    """``needs_site_after`` (a laterality that counts only before a site) and its ``except_sites``; ``not_before``
    (words a laterality does not count in front of); ``of_sites`` (a site word that "of the <site>" refines)."""
    metadata = rule.metadata or {}
    of_sites = metadata.get("of_sites")
    if of_sites is not None and (rule.category in LATERALITIES or not isinstance(of_sites, list)
                                 or not set(of_sites) <= set(SITES)):
        raise ValueError(f"rule file {where}: of_sites must be a list of SITES on a site rule, got {of_sites!r}")
    if "needs_site_after" in metadata and (rule.category not in LATERALITIES
                                           or not isinstance(metadata["needs_site_after"], bool)):
        raise ValueError(f"rule file {where}: needs_site_after must be true/false on a laterality rule")
    unknown = set(metadata.get("except_sites", ())) - set(SITES)
    if unknown:
        raise ValueError(f"rule file {where}: except_sites {sorted(unknown)} are not SITES")
    not_before = metadata.get("not_before")
    if not_before is not None and (rule.category not in LATERALITIES or not isinstance(not_before, list) or
                                   not all(isinstance(word, str) and word == word.lower() for word in not_before)):
        raise ValueError(f"rule file {where}: not_before must be a list of lower-case words on a laterality rule")


def load_rule_set(tokenize: Callable[[str], list[str]] | None = None) -> RuleSet:
    """Read and validate every rule file; raise ``ValueError`` naming the file and rule on any problem.

    Args:
        tokenize: The pipeline's tokenizer as text -> token texts.  With it, token patterns that
            spell out a short list of phrases are loaded as phrase rules (see :func:`compile_phrases`).
    """
    from medspacy.context import ConTextRule
    from medspacy.section_detection import SectionRule
    from medspacy.target_matcher import TargetRule

    rule_set = RuleSet(files=tuple(rule_files()), version=rules_version())
    excluded: set[str] = set()
    line_start: set[str] = set()
    phrases: dict[str, dict] = {}  # rule kind -> {phrase: (where, outcome)}
    kinds = {"target_rules": (TargetRule, rule_set.target_rules),
             "context_rules": (ConTextRule, rule_set.context_rules),
             "section_rules": (SectionRule, rule_set.section_rules),
             "site_rules": (TargetRule, rule_set.site_rules)}
    for name in rule_set.files:
        if not name.endswith(".json"):
            continue
        data = _read(name)
        lists = [key for key in data if key in kinds]
        unknown = set(data) - set(kinds) - {"metadata"}
        if unknown or len(lists) != 1:
            raise ValueError(f"rule file {name}: expected 'metadata' and one of {sorted(kinds)}, got {sorted(data)}")
        key = lists[0]
        rule_class, target = kinds[key]
        excluded.update(data.get("metadata", {}).get("excluded_sections", []))
        line_start.update(data.get("metadata", {}).get("line_start_sections", []))
        if "exam_side" in data.get("metadata", {}):
            if rule_set.exam_side is not None:
                raise ValueError(f"rule file {name}: exam_side is set in two rule files")
            rule_set.exam_side = ExamSide.from_metadata(data["metadata"]["exam_side"], name)
        for index, authored in enumerate(data[key]):
            try:
                if isinstance(authored.get("pattern"), str):
                    re.compile(authored["pattern"])
                rule_dicts = compile_phrases(authored, tokenize) or expand_first_token(authored)
                rules = [rule_class.from_dict(rule_dict) for rule_dict in rule_dicts]
                for rule in rules:
                    _attach_callbacks(rule, name)
            except (ValueError, TypeError, re.error) as error:
                raise ValueError(f"rule file {name}, rule {index} ({authored.get('literal')!r}): {error}") from None
            rule = rules[0]
            if key == "target_rules" and rule.category not in FINDINGS + INTERNAL_CATEGORIES:
                raise ValueError(f"rule file {name}, rule {index}: category {rule.category!r} is not in the "
                                 f"vocabulary (core/vocabulary.py FINDINGS) nor {INTERNAL_CATEGORIES}")
            metadata = (rule.metadata or {}) if key == "target_rules" else {}
            device_types = {metadata.get("device_type"), *dict(metadata.get("device_type_by_word") or {}).values()}
            if device_types - {None} - set(DEVICE_TYPES):
                raise ValueError(f"rule file {name}, rule {index}: device_type {sorted(device_types - {None} - set(DEVICE_TYPES))} "
                                 f"not in DEVICE_TYPES")
            if "finding_by_size" in metadata:
                _check_finding_by_size(metadata["finding_by_size"], f"{name}, rule {index}")
            if "at_sites" in metadata:
                _check_at_sites(metadata["at_sites"], rule.category, f"{name}, rule {index}")
            if "beside_sites" in metadata:
                _check_beside_sites(metadata["beside_sites"], rule.category, f"{name}, rule {index}")
            if metadata.get("device_type_by_word") and rule.category != "device":
                raise ValueError(f"rule file {name}, rule {index}: device_type_by_word on a {rule.category!r} rule")
            if key == "site_rules" and rule.category not in SITES + LATERALITIES:
                raise ValueError(f"rule file {name}, rule {index}: {rule.category!r} is not a site or laterality")
            if key == "site_rules":
                _check_site_metadata(rule, f"{name}, rule {index}")
            _check_phrase_conflicts(rules, phrases.setdefault(key, {}), f"{name}, rule {index}")
            target.extend(rules)
    rule_set.excluded_sections = frozenset(excluded)
    rule_set.line_start_sections = frozenset(line_start)
    unknown = rule_set.line_start_sections - {rule.category for rule in rule_set.section_rules}
    if unknown:
        raise ValueError(f"line_start_sections {sorted(unknown)} are no section rule's category")
    exam = rule_set.exam_side
    unknown = ((exam.sections | exam.header_sections) if exam else frozenset()) - {
        rule.category for rule in rule_set.section_rules}
    if unknown:
        raise ValueError(f"exam_side sections {sorted(unknown)} are no section rule's category")
    return rule_set
