"""What a report labeller finds in a text, as the rule tests ask it."""

from __future__ import annotations


def found(labeler, text: str, finding: str, status: str | None = None) -> list:
    """The mentions of ``finding`` that ``labeler`` finds in ``text``; only those of ``status`` when it is given."""
    return [mention for mention in labeler.label(text)
            if mention.finding == finding and (status is None or mention.status == status)]
