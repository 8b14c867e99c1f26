"""Callables that rule files refer to by name (``metadata.on_modifies`` / ``metadata.on_match``).

Rule files stay pure data: a rule names a function here and :mod:`radloop.labeling.rules_loader`
resolves the name through :data:`CALLBACKS`.  An unknown name is an error at load time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # type hints only: importing spaCy (and torch through it) costs seconds
    from spacy.tokens import Span

_COMPARISON_BEFORE = re.compile(r"\b(?:compared?\s+(?:to|with)|comparison\s+(?:to|with)|since|than|from|versus|vs\.?)\s*(?:the\s+)?$",
                                re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;]\s*(?:and|with|there|the|a|an)\b", re.IGNORECASE)


def not_comparison_reference(target: Span, modifier: Span, span_between: Span) -> bool:
    """Reject a history trigger that names the comparison study ("compared to prior", "since previous").

    "Prior"/"previous" there refers to an earlier examination, not to the age of the finding.
    """
    doc = modifier.doc
    before = doc[max(modifier.start - 4, 0):modifier.start].text
    return _COMPARISON_BEFORE.search(before) is None


def within_clause(target: Span, modifier: Span, span_between: Span) -> bool:
    """Reject a modifier separated from its target by a clause break (", and ...", "; there ...")."""
    return _CLAUSE_BREAK.search(span_between.text) is None


def history_trigger(target: Span, modifier: Span, span_between: Span) -> bool:
    """History triggers: not the comparison study, and not across a clause break."""
    return not_comparison_reference(target, modifier, span_between) and within_clause(target, modifier, span_between)


#: name -> function; rule files refer to these names.
CALLBACKS: dict[str, Callable[..., bool]] = {
    "not_comparison_reference": not_comparison_reference,
    "within_clause": within_clause,
    "history_trigger": history_trigger,
}


def get_callback(name: str) -> Callable[..., bool]:
    """Return the callback registered as ``name``; raise ``ValueError`` listing valid names."""
    try:
        return CALLBACKS[name]
    except KeyError:
        raise ValueError(f"unknown callback {name!r}; valid: {', '.join(sorted(CALLBACKS))}") from None
