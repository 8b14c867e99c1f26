"""The size a report gives a finding ("a 2.6 cm masslike density", "masslike opacity measuring 25 mm").

Used by target rules whose ``metadata.finding_by_size`` turns a small lesion into another finding: by the
Fleischner Society glossary (Hansell et al., Radiology 2008;246:697-722) a nodule measures up to 3 cm and a
mass more than 3 cm, so "a 2.6 cm masslike density" is a nodule.
"""

from __future__ import annotations

import re

_NUMBER = r"(?:\d{1,3}(?:\.\d{1,2})?|\.\d{1,2})"
_UNIT = r"(?:cm|mm|centimeters?|millimeters?)(?![A-Za-z])"
#: "2.6 cm", "2-cm", "2.5 x 1.9 cm", "2.5 cm x 1.9 cm", "2-3 cm", "25 mm".
_SIZE = (rf"{_NUMBER}(?:[ \t]?-?[ \t]?{_UNIT})?(?:[ \t]{{0,2}}(?:x|by|×|-|to)[ \t]{{0,2}}{_NUMBER}"
         rf"(?:[ \t]?-?[ \t]?{_UNIT})?){{0,2}}[ \t]?-?[ \t]?{_UNIT}")
#: A size right before the finding's words: "a 2.6 cm diameter masslike density", "2 cm ill-defined masslike ...".
_SIZE_BEFORE = re.compile(rf"(?<![\w.])(?P<size>{_SIZE})(?:[ \t]{{1,3}}(?:in[ \t]+)?(?:diameter|size|sized|greatest"
                          rf"[ \t]+dimension))?(?:[ \t,]{{1,3}}(?!(?:and|or|with|of|in|the|to)(?![\w-]))[a-z][a-z-]{{0,30}}){{0,2}}"
                          rf"[ \t]{{0,3}}$",
                          re.IGNORECASE)
#: A size right after it: "masslike opacity measuring 2.5 cm", ", 2 cm", "of 2 cm", "in the lingula measuring 2 cm",
#: "in the left lower lobe (20 mm)".
_SIZE_AFTER = re.compile(rf"^[ \t]{{0,3}}(?:,[ \t]{{0,3}}|(?:[a-z-]{{1,30}}[ \t]{{1,3}}){{0,5}}?(?:\([ \t]{{0,3}}"
                         rf"|(?:measuring|measures|measured|of|which[ \t]+measures)[ \t]{{1,3}}))"
                         rf"(?:(?:approximately|approx\.?|about|up[ \t]+to|roughly|nearly|at[ \t]+least)[ \t]{{1,3}})?"
                         rf"(?P<size>{_SIZE})", re.IGNORECASE)
_PART = re.compile(rf"(?P<number>{_NUMBER})(?:[ \t]?-?[ \t]?(?P<unit>{_UNIT}))?", re.IGNORECASE)


def largest_dimension_cm(size: str) -> float | None:
    """The largest number of a written size in centimetres ("2.5 x 1.9 cm" -> 2.5, "25 mm" -> 2.5); a number
    without its own unit takes the next unit written ("2-3 cm")."""
    parts = [(float(match["number"]), (match["unit"] or "").lower()) for match in _PART.finditer(size)]
    values, pending = [], []
    for number, unit in parts:
        pending.append(number)
        if unit:
            scale = 0.1 if unit.startswith("m") else 1.0
            values += [value * scale for value in pending]
            pending = []
    return max(values) if values else None


def stated_size_cm(before: str, after: str) -> float | None:
    """The largest dimension of the size written right before (``before`` ends where the finding's words start)
    or right after (``after`` starts where they end) a finding, in the same sentence; None when none is."""
    match = _SIZE_BEFORE.search(before[-120:]) or _SIZE_AFTER.match(after[:160])
    return largest_dimension_cm(match["size"]) if match else None
