"""Pattern pieces of :mod:`radloop.labeling.redact_rules`: placeholders, case variants, street, name, date and age
fragments (:data:`FRAGMENTS`, written ``{piece}`` in a rule's pattern) and :func:`words`, which turns phrase lists
into regex alternations.  Word lists live in :mod:`radloop.labeling.redact_words`.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from radloop.labeling.redact_words import (FAMILY_HISTORY_WORDS, NAME_PARTICLES, NAME_SUFFIXES, NOT_NAMES,
                                          NOT_STREET_NAMES, PATIENT_VERBS, PROCEDURE_WORDS, PROSE_WORDS, RELATIVES,
                                          UPPER_NAME_PARTICLES)
from radloop.labeling.redact_words import PROSE_SUFFIXES as _PROSE_SUFFIXES

__all__ = ["CASES", "FRAGMENTS", "PLACEHOLDERS", "words"]

#: What each kind of identifier becomes (an age over 89 keeps what HIPAA Safe Harbor allows: "90 or older").
PLACEHOLDERS: Mapping[str, str] = {
    "date": "[DATE]", "time": "[TIME]", "id": "[ID]", "phone": "[PHONE]", "email": "[EMAIL]", "url": "[URL]",
    "name": "[NAME]", "age": "[AGE 90+]", "address": "[ADDRESS]",
}

_MONTHS_FULL = ("January", "February", "March", "April", "June", "July", "August", "September", "October",
                "November", "December")  # "May" only next to a year: it is also a verb
_MONTHS_SHORT = ("Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec")
CASES = {"any": ("lower", "capitalize", "title", "upper"), "title": ("title", "upper"), "exact": ()}
#: Street types.  Strong ones make a street address after a house number and 1-3 street-name words, in
#: Title or UPPER case ("Street", "AVE") ...
_STREET_TYPES = ("Street", "Avenue", "Ave", "Road", "Boulevard", "Blvd", "Parkway", "Pkwy", "Highway", "Hwy",
                 "Terrace")
_STREET_TYPES_TITLE = ("Rd",)  # strong in Title case only ("RD" needs evidence, below)
#: ... weak ones are also report words ("in place", "ST elevation", "air crescent", "drive line", "3 way
#: stopcock", "Circle of Willis"): an address only with more evidence (see the street-address rules).  The
#: second tuple is Title case only but before "City, ST 12345": in UPPER case they are abbreviations (DR, LN,
#: RD) or words (WAY); "Ct" and "Pl" are left out (title-cased "Ct" is the modality).
_STREET_TYPES_WEAK = ("St", "Place", "Court", "Crescent", "Circle", "Trail", "Lane", "Drive")
_STREET_TYPES_WEAK_TITLE = ("Av", "Ln", "Dr", "Ter", "Cir", "Way")
#: Weak types that make an address where they end a line, the text or a clause ("9 OAK ST", "(4 Willow Dr),"):
#: not Av, Ln (AV block, lymph nodes); UPPER case also RD.
_STREET_TYPES_WEAK_END = tuple(kind for kind in (*_STREET_TYPES_WEAK, *_STREET_TYPES_WEAK_TITLE)
                               if kind not in ("Av", "Ln"))
#: What may follow a street type in place of a capitalised word: a direction, an apartment or suite, and in
#: Title or UPPER case a preposition ("1234 OAK STREET WITH HER SON"; "STREET AND PRESCRIPTION DRUGS" stays).
_STREET_DIRECTIONS = ("NE", "NW", "SE", "SW")
_STREET_FOLLOWERS = ("With", "In", "On", "At", "Near", "For", "To", "From", "Since", "Where", "When")
_UNIT_WORDS = ("Apt", "Apartment", "Suite", "Ste", "Unit", "Floor", "Fl", "Room", "Rm")
#: USPS state codes: "City, ST" without a ZIP code is evidence only with one of them and a Title-case city.
_STATES = """AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC
ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI""".split()
#: Street types written short: their dot belongs to the address ("Main St."), a full word's is the sentence's.
_STREET_ABBREVIATIONS = frozenset("St Ave Rd Blvd Pkwy Hwy Av Ln Dr Ter Cir".split())


def words(phrases: Iterable[str], case: str = "any") -> str:
    """A regex matching each phrase (in the given case forms) only at the start of a word.

    The phrases are merged into a trie, so a candidate position costs the length of the longest phrase,
    not the number of phrases; each alternative starts with a literal (the engine skips to candidate
    characters) followed by a look-behind on the character before it.  Words are separated by 1-3 blanks.
    """
    trie: dict = {}
    for phrase in phrases:
        for form in {getattr(phrase, method)() for method in CASES[case]} or {phrase}:
            node = trie
            for unit in re.findall(r" +|[^ ]", form):
                node = node.setdefault(" " if unit.startswith(" ") else unit, {})
            node[""] = {}  # a phrase ends here

    def render(node: dict) -> str:
        ends = "" in node
        branches = [(r"[ \t]{1,3}" if unit == " " else re.escape(unit)) + render(child)
                    for unit, child in sorted(node.items()) if unit]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not ends else "(?:" + "|".join(branches) + ")"
        return body + "?" if ends else body

    return "(?:" + "|".join(re.escape(first) + r"(?<![\w.].)" + render(child)
                            for first, child in sorted(trie.items())) + ")"


def _street_types(kinds: Iterable[str], title: bool = True, upper: bool = True) -> str:
    """A regex matching the street types as written (``title``) and/or in UPPER case, as whole words; an
    abbreviation takes its dot along."""
    forms = [form for kind in kinds for form in ((kind,) if title else ()) + ((kind.upper(),) if upper else ())]
    full = [form for form in forms if form.title() not in _STREET_ABBREVIATIONS]
    short = [form for form in forms if form.title() in _STREET_ABBREVIATIONS]
    abbreviated = f"|{words(short, 'exact')}(?![\\w'’])\\.?" if short else ""
    return f"(?:{words(full, 'exact')}(?![\\w'’]){abbreviated})"


_PROSE_FORM = ("(?![A-Za-z]{3,31}+(?![\\w'’])(?i:" + "|".join(
    f"(?<={'[a-z]{' + str(size - len(end)) + '}' if size > len(end) else ''}{end})"
    for end, size in sorted(_PROSE_SUFFIXES.items())) + "))")
_NOT_NAME = rf"(?!{words(NOT_NAMES | PROSE_WORDS, 'title')}(?![\w'’])){_PROSE_FORM}"  # names are capitalised
_NAME_WORD = (r"(?:[A-Z]['’])?[A-Z][a-z]{1,30}(?:[A-Z][a-z]{1,30})?(?:-(?:[A-Z]['’])?[A-Z][a-z]{1,30})?"
              r"(?![\w'’])")
_INITIAL = r"[A-Z]\.(?!\w)"  # "J.", also "A." ("Roe, Jane A."): no word check
#: Surname particles before a name word ("van der Berg", "de la Cruz", "al-Hassan", "d'Angelo", "St. John").
_PARTICLE = rf"(?:{words(NAME_PARTICLES, 'exact')}(?:[ \t]{{1,3}}|(?<!\.)-)|[dl](?<![\w'’.-].)['’])"
_PARTICLES = rf"(?:{_PARTICLE}(?=[A-Za-z])){{0,3}}"
#: UPPER-CASE particles ("DE LA CRUZ"), taken whole (atomic: a run of "DE DE DE ..." is not split every way).
_UPPER_PARTICLES = rf"(?>(?:{words(UPPER_NAME_PARTICLES, 'exact')}[ \t]{{1,3}}(?=[A-Z])){{1,3}})"
#: An UPPER-CASE surname after UPPER-CASE particles, where Title-case names are expected ("Maria DE LA CRUZ").
_UPPER_PARTICLE_NAME = (rf"{_UPPER_PARTICLES}(?!{words([word.upper() for word in NOT_NAMES], 'exact')}(?![\w'’]))"
                        r"(?:[A-Z]['’])?[A-Z]{2,30}(?:-(?:[A-Z]['’])?[A-Z]{2,30})?(?![\w'’])")
_NAME = rf"(?:{_PARTICLES}{_NOT_NAME}{_NAME_WORD}|{_UPPER_PARTICLE_NAME}|{_INITIAL})"
_UPPER_NAME = (rf"(?:{_PARTICLES}{_NOT_NAME}(?:(?:[A-Z]['’])?[A-Z]{{2,30}}(?:-(?:[A-Z]['’])?[A-Z]{{2,30}})?(?![\w'’])"
               rf"|{_NAME_WORD})|{_INITIAL})")
#: What may come next in a run of names: a capital or a particle ("Maria de la Cruz").
_NEXT_NAME = rf"(?=[A-Z]|{_PARTICLE})"
#: The value of a patient-name label ("PT NAME: SMITH,JOHN A", "Patient name: J SMITH JR"): a name word first (or a
#: surname before its comma), then names, initials without a dot, a generational suffix, or, where the field ends
#: (line end, punctuation, two blanks, a demographic label), any capitalised word that is no header word: the
#: label makes "JOHN BACK" a name.
_BARE_INITIAL = r"[A-Z](?![\w'’])\.?"
_SUFFIX = rf"{words(NAME_SUFFIXES, 'exact')}(?![\w'’])"
_FIELD_WORD = (rf"(?!{words(NOT_NAMES, 'title')}(?![\w'’]))(?:[A-Z]['’])?[A-Z][A-Za-z]{{1,30}}"
               r"(?:-(?:[A-Z]['’])?[A-Z][A-Za-z]{1,30})?(?![\w'’])")
_DEMOGRAPHIC_LABELS = ("DOB", "date of birth", "birth date", "MRN", "age", "sex", "gender", "ID", "acct", "accession",
                       "room", "SSN", "phone", "exam date", "date")
_FIELD_END = (rf"(?=[ \t]{{0,3}}(?:[\r\n,;|]|\.(?!\w)|$)|[ \t]{{2}}|[ \t]{{1,3}}{words(_DEMOGRAPHIC_LABELS, 'title')}"
              r"(?![\w'’]))")
_LABEL_NAME = rf"(?:{_SUFFIX}|{_UPPER_NAME}|{_BARE_INITIAL}|{_FIELD_WORD}{_FIELD_END})"
#: Relatives listed with a colon ("Mother: Jane Doe"): 2-3 capitalised words, none a family-history word
#: ("Mother: Breast Cancer", "Father: Lou Gehrig Disease" stay).
_FAMILY_HISTORY_WORD = rf"{words(FAMILY_HISTORY_WORDS, 'title')}(?![\w'’])"
_RELATIVE_LIST_NAME = rf"{_PARTICLES}(?!{_FAMILY_HISTORY_WORD}){_NOT_NAME}{_NAME_WORD}"
#: The same in UPPER case ("MOTHER: JANE DOE"): words of three letters at least ("MOTHER: CA", "FATHER: MI HTN" stay).
_RELATIVE_LIST_UPPER_NAME = (rf"(?:{_PARTICLES}|{_UPPER_PARTICLES})(?!{_FAMILY_HISTORY_WORD}){_NOT_NAME}"
                             r"(?:[A-Z]['’])?[A-Z]{3,30}(?:-(?:[A-Z]['’])?[A-Z]{2,30})?(?![\w'’])")
#: A first name of two letters with a vowel ("MOTHER: JO ROE"; walk 22a), only before more UPPER-CASE names.
_RELATIVE_LIST_UPPER_SHORT = rf"(?!{_FAMILY_HISTORY_WORD}){_NOT_NAME}(?=[A-Z]?[AEIOUY])[A-Z]{{2}}(?![\w'’])"
#: One UPPER-CASE word may end the field when it has a vowel ("MOTHER: JANE"; "MOTHER: HTN", "MOTHER: CANCER"
#: stay): the group ``vowel`` records that, a conditional reads it (one copy of the word pattern, not two).
_UPPER_VOWEL = r"(?P<vowel>(?=[A-Z]{0,30}[AEIOUY]))?"
#: Where a one-word value of "<relative>:" ends: a line end, the text's end, or punctuation ("Mother: Jane;").
_RELATIVE_FIELD_END = r"(?=[ \t]{0,3}(?:[\r\n,;.|()]|$))"

_NOT_STREET_NAME = rf"(?!{words(NOT_STREET_NAMES)}(?![\w'’]))"
_STREET_WORD_TITLE = (rf"{_NOT_STREET_NAME}(?:(?:[A-Z]['’])?[A-Z][a-z]{{1,30}}(?:[A-Z][a-z]{{1,30}})?"
                      r"|\d{1,3}(?:st|nd|rd|th))")
_STREET_WORD_UPPER = rf"{_NOT_STREET_NAME}(?:(?:[A-Z]['’])?[A-Z]{{3,30}}|\d{{1,3}}(?i:st|nd|rd|th))"
_MONTH_SLASH_DAY = r"(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])(?![\w/]|[.,]\d)"
_CITY_WORD = r"(?:[A-Z][a-z]{1,30}|[A-Z]{2,30})"
_TITLE_CITY = r"(?:[A-Z][a-z]{1,30}[ \t]{1,3}){0,2}[A-Z][a-z]{1,30}"
_ZIP = r"\d{5}(?:-\d{4})?(?!\d)"
_STATE = rf"{words(_STATES, 'exact')}(?!\w)"
_UNIT = (rf"(?:{words(_UNIT_WORDS, 'title')}\.?[ \t]{{0,3}}#?|#)"
         r"[ \t]{0,3}(?:[A-Za-z]?\d{1,5}[A-Za-z]?|[A-Z])(?!\w)")

#: Regex pieces the rules share, written ``{piece}`` in a pattern.  Month names match in Title or UPPER
#: case only ("march", "may" are verbs).  ``name``: a capitalised word (O'Brien, McDonald, Smith-Jones) or
#: an initial, never a :data:`NOT_NAMES` or :data:`PROSE_WORDS` word nor one with a prose ending; ``names``:
#: 1-3 of them, commas between allowed ("Smith, John"); ``upper_names``: 1-4, UPPER-CASE words too; ``next_name``: a
#: look-ahead for the next name of a run (a capital or a particle: "Pt Maria van der Berg"); ``relative``: a relation
#: word ("daughter", "HCP: Daughter" is no name).
#: ``month_slash_day``: a valid m/d without a year; ``month_slash_days``: one, a range or a list of up to six
#: ("3/5-3/7", "3/5, 3/7 and 3/9"); ``age_ninety_plus``: 90-119; ``sex_follows``: M, female, male ... next,
#: or F (not "F/U", not before a temperature word) after 90-94 or 111-119: 95-110 F is a temperature ("a
#: 102F") unless female, woman, yo, year ... follows ("a 97 F female"); ``procedure``: up to 3 spine words and
#: a procedure ("posterior lumbar interbody fusion", "-ectomies").  Street addresses: ``house_number`` ("12", "12B");
#: ``street_words_title`` / ``street_words_upper``: 1-3 Title-case / UPPER-CASE words (3 letters at least) or
#: ordinals ("5th"), never a :data:`NOT_STREET_NAMES` word, with their blanks; ``street_type_strong_*`` /
#: ``street_type_weak_*``: the types of :data:`_STREET_TYPES` / :data:`_STREET_TYPES_WEAK` in that case;
#: ``street_type_any``: all of them; ``street_direction``: N, N., NE, North ...; ``street_end``: an
#: abbreviation's dot, or no capitalised word or number next but a direction or apartment ("3 Different
#: Street Drugs", "3 MEASUREMENTS AVE 10.5" are no address), never a possessive ("St. Luke's");
#: ``street_tail``: what may follow (NW, "Apt 4", "#12", ", City, ST 12345"); ``street_evidence_title`` /
#: ``street_evidence_upper``: what must follow a weak type (a direction, an apartment, a "City, ST" with a
#: state code / a "City, ST 12345" with a ZIP code); ``street_evidence_end``: the end of a line, the text or
#: a clause (, ; or a closing bracket) after one of ``street_type_weak_end_*`` (:data:`_STREET_TYPES_WEAK_END`).
#: Scores written before a bare "prior"/"previous" ("strength prior 4/5", "Grip strength, prior 4/5", "Reflex:
#: prior 2/4"): fixed-width look-behinds placed right after the cue, so that the rule still starts with its cue
#: literal (a pattern that starts with a look-behind is tried at every position: ~10x slower).
_SCORE_WORDS = (("strength", "reflexes"), ("reflex",), ("power", "motor", "grade", "score"))
_NOT_AFTER_SCORE = "".join(
    rf"(?<!(?i:{'|'.join(group)}){separator}(?i:{cue}))"
    for group in _SCORE_WORDS for separator in (r"[ \t:,]", r"[ \t:,][ \t]") for cue in ("prior", "previous"))

#: Words before a list of rib or vertebral numbers ("ribs 7-9-11", "fractures 7-9-11", "left posterior 7-9-11"): after
#: one of them and a blank, a blank and a bracket or a bracket ("rib fractures (7-9-11)"; walk 22a), three hyphenated
#: numbers ending in 1-12 (a rib or thoracic level, not a year such as 23) are no date ("fracture 4-17-23" is one).
#: Written as a negative look-ahead over alternative fixed-width look-behinds, placed right after the rule's first
#: digit.
_LIST_WORDS = ("rib", "ribs", "level", "levels", "fracture", "fractures", "fx", "fxs", "vertebra", "vertebrae",
               "vertebral", "body", "bodies", "left", "right", "bilateral", "posterior", "anterior", "lateral",
               "posterolateral", "anterolateral")
_NOT_AFTER_LIST = ("(?!(?:" + "|".join(rf"(?<=(?i:{word}){gap}.)" for word in _LIST_WORDS
                                       for gap in (r"[ \t]", r"[ \t]\(", r"\(")) + ")"
                   r"\d?-\d{1,2}-(?:0[1-9]|1[0-2])(?![\w.-]?\d))")
#: A unit or counted noun right after a number list ("2.5.10 cm", "7-9-11 ribs"): no date.
_COUNT_AFTER = (r"(?i:x|cm|mm|m|ml|cc|mg|kg|%|ribs?|levels?|vertebrae|views?|images?|times|weeks?|days?|months?|years?)"
                r"(?!\w)")

FRAGMENTS: Mapping[str, str] = {
    "month_full": words(_MONTHS_FULL, "title"),
    "month_any": words((*_MONTHS_FULL, "May", *_MONTHS_SHORT), "title"),
    "ordinal": r"(?:st|nd|rd|th|ST|ND|RD|TH)?",
    "month_any_case": r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
                      r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![A-Za-z])",
    "year": r"(?:19|20)\d{2}(?!\d)",
    "name": f"(?:{_NAME})",
    "names": rf"(?:{_NAME}(?:,?[ \t]{{1,3}}{_NEXT_NAME})?){{1,3}}(?<![ \t,])",
    "upper_names": rf"(?:{_UPPER_NAME}(?:,?[ \t]{{1,3}}{_NEXT_NAME})?){{1,4}}(?<![ \t,])",
    "label_names": rf"(?:{_UPPER_NAME}|{_BARE_INITIAL}|{_FIELD_WORD}(?=,))"
                   rf"(?:(?:,[ \t]{{0,3}}|[ \t]{{1,3}}){_LABEL_NAME}){{0,4}}(?<![ \t,])",
    "relative_list_names": rf"(?:{_RELATIVE_LIST_NAME}(?:[ \t]{{1,3}}{_RELATIVE_LIST_NAME}){{1,2}}"
                           rf"|{_RELATIVE_LIST_NAME}{_RELATIVE_FIELD_END}"
                           rf"|(?:{_UPPER_VOWEL}{_RELATIVE_LIST_UPPER_NAME}|{_RELATIVE_LIST_UPPER_SHORT})"
                           rf"(?:(?:[ \t]{{1,3}}{_RELATIVE_LIST_UPPER_NAME}){{1,2}}|(?(vowel){_RELATIVE_FIELD_END}|(?!))))"
                           rf"(?![ \t]{{1,3}}{_FAMILY_HISTORY_WORD})",
    "patient_verbs": words(PATIENT_VERBS, "exact"),
    "next_name": _NEXT_NAME,
    "relative": rf"{words(RELATIVES)}(?![\w'’])",
    "title_word": r"(?:Dr|DR|Doctor)\.?[ \t]{1,3}",
    "month_slash_day": _MONTH_SLASH_DAY,
    "month_slash_days": rf"{_MONTH_SLASH_DAY}(?>(?:(?:[ \t]{{0,3}}(?:-|(?i:to|through))|,?[ \t]{{1,3}}(?i:and|or)|,)"
                        rf"[ \t]{{0,3}}{_MONTH_SLASH_DAY}){{0,5}})",
    "age_ninety_plus": r"(?:9\d|1[01]\d)(?![.,]?\d|\+)",  # "90+" is Safe Harbor's own aggregate
    "sex_follows": r"(?:(?<!9[5-9])(?<!10\d)(?<!110)(?=[ \t]{0,2}F(?![\w°'’/])(?![ \t]{0,3}(?i:fever|febrile"
                   r"|temp|temperature|degrees?|deg|oral|orally|rectal|rectally|axillary|tympanic|core)(?!\w)))"
                   r"|(?=[ \t]{0,2}F(?![\w°'’/])[ \t]{0,3}(?i:female|woman|lady|girl|y/?o|y\.o|years?|yrs?|old)"
                   r"(?!\w))"
                   r"|(?=[ \t]{0,2}(?:M(?![\w°'’/])|(?i:female|male|woman|man|lady|gentleman)(?!\w))))",
    "not_after_score": _NOT_AFTER_SCORE,
    "not_after_list": _NOT_AFTER_LIST,
    "count_after": _COUNT_AFTER,
    "procedure": rf"(?i:(?:{words(PROCEDURE_WORDS)}(?![\w'’])[ \t]{{1,3}}){{0,3}}(?:[a-z]{{0,20}}"
                 r"(?:ectom|otom|ostom)(?:y|ies)|[a-z]{0,20}plast(?:y|ies)|[a-z]{0,20}(?:desis|deses)|fusions?"
                 r"|decompressions?|hardware"
                 r"|instrumentation|acdf|[pta]lif|xlif)(?![\w'’]))",
    "house_number": r"\d(?<![\w.,/:#+-].)(?=\d{0,4}(?:-?[A-Za-z])?[ \t]{1,3}(?:[A-Z]|\d{1,3}[A-Za-z]))"
                    r"\d{0,4}(?:-?[A-Za-z](?![\w'’]))?[ \t]{1,3}",
    "street_words_title": rf"(?:{_STREET_WORD_TITLE}(?![\w'’])[ \t]{{1,3}}){{1,3}}",
    "street_words_upper": rf"(?:{_STREET_WORD_UPPER}(?![\w'’])[ \t]{{1,3}}){{1,3}}",
    "street_words_any": rf"(?:(?:{_STREET_WORD_TITLE}|{_STREET_WORD_UPPER})(?![\w'’])[ \t]{{1,3}}){{1,3}}",
    "street_type_strong_title": _street_types((*_STREET_TYPES, *_STREET_TYPES_TITLE), upper=False),
    "street_type_strong_upper": _street_types(_STREET_TYPES, title=False),
    "street_type_weak_title": _street_types((*_STREET_TYPES_WEAK, *_STREET_TYPES_WEAK_TITLE), upper=False),
    "street_type_weak_upper": _street_types((*_STREET_TYPES_WEAK, *_STREET_TYPES_WEAK_TITLE, *_STREET_TYPES_TITLE),
                                            title=False),
    "street_type_weak_end_title": _street_types(_STREET_TYPES_WEAK_END, upper=False),
    "street_type_weak_end_upper": _street_types((*_STREET_TYPES_WEAK_END, *_STREET_TYPES_TITLE), title=False),
    "street_evidence_end": r"\.?[ \t]{0,3}(?:[,;)\r\n]|$)",
    "street_type_any": f"(?:{_street_types((*_STREET_TYPES, *_STREET_TYPES_WEAK))}"
                       f"|{_street_types((*_STREET_TYPES_TITLE, *_STREET_TYPES_WEAK_TITLE), upper=False)})",
    "street_direction": r"(?:(?:N[EW]?|S[EW]?|[EW])\.?|North|South|East|West|NORTH|SOUTH|EAST|WEST)[ \t]{1,3}",
    "street_end": rf"(?!\.?[ \t]{{1,3}}[A-Z][A-Za-z]{{0,30}}['’][sS]\b)(?:(?<=\.)|(?![ \t]{{1,3}}"
                  rf"(?!{words((*_STREET_DIRECTIONS, *_UNIT_WORDS, *_STREET_FOLLOWERS), 'title')}\.?(?!\w))"
                  r"(?:[A-Z]|\d(?!\d{0,2}(?i:st|nd|rd|th)\b))))",
    "street_tail": rf"(?:[ \t]{{1,3}}(?:N[EW]|S[EW])(?!\w))?(?:,?[ \t]{{1,3}}{_UNIT})?"
                   rf"(?:,[ \t]{{1,3}}(?:(?:{_CITY_WORD}[ \t]{{1,3}}){{0,2}}{_CITY_WORD},?[ \t]{{1,3}}"
                   rf"(?:[A-Z]{{2}}[ \t]{{1,3}}{_ZIP}|{_STATE}(?:[ \t]{{1,3}}{_ZIP})?)))?",
    "street_evidence_title": rf"\.?(?:[ \t]{{1,3}}(?:N[EW]|S[EW])(?!\w)|,?[ \t]{{1,3}}{_UNIT}"
                             rf"|,[ \t]{{1,3}}{_TITLE_CITY},?[ \t]{{1,3}}{_STATE})",
    "street_evidence_upper": rf"\.?(?:[ \t]{{1,3}}(?:N[EW]|S[EW]))?(?:,?[ \t]{{1,3}}{_UNIT})?"
                             rf",[ \t]{{1,3}}(?:{_CITY_WORD}[ \t]{{1,3}}){{0,2}}{_CITY_WORD},?[ \t]{{1,3}}[A-Z]{{2}}"
                             rf"[ \t]{{1,3}}{_ZIP}",
}
