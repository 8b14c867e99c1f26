"""Report-level labels from mention-level ones."""

from __future__ import annotations

from typing import Iterable

from radloop.core.records import FindingMention

_RANK = {"positive": 2, "uncertain": 1, "negative": 0}


def report_level(mentions: Iterable[FindingMention]) -> dict[str, str]:
    """``{finding: "positive" | "uncertain" | "negative"}``: any positive mention wins, then uncertain.

    Findings never mentioned are absent (unknown), not negative.
    """
    levels: dict[str, str] = {}
    for mention in mentions:
        current = levels.get(mention.finding)
        if current is None or _RANK[mention.status] > _RANK[current]:
            levels[mention.finding] = mention.status
    return levels
