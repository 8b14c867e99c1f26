"""Report-level labels from mention-level ones."""

from __future__ import annotations

from typing import Iterable, Mapping

from radloop.core.records import FindingMention

from .checks import require_many
from .mention_json import as_mention

_RANK = {"positive": 2, "uncertain": 1, "negative": 0}


def report_level(mentions: Iterable[FindingMention | Mapping]) -> dict[str, str]:
    """``{finding: "positive" | "uncertain" | "negative"}``: any positive mention wins, then uncertain.

    Findings never mentioned are absent (unknown), not negative.

    Args:
        mentions: One report's mentions: ``FindingMention`` records (a ``LabelResult``) or dicts in
            the ``to_json`` layout (``label-reports`` JSONL, ``stored_mentions``).

    Raises:
        TypeError: ``mentions`` is a ``str``, or an item is neither a mention nor a dict.
    """
    require_many(mentions, "mentions", "FindingMention records or their to_json dicts")
    levels: dict[str, str] = {}
    for entry in mentions:
        mention = as_mention(entry)
        current = levels.get(mention.finding)
        if current is None or _RANK[mention.status] > _RANK[current]:
            levels[mention.finding] = mention.status
    return levels
