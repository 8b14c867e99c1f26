"""Finding mentions as :class:`~radloop.core.records.FindingMention` or as JSON dicts, interchangeably.

The labeller returns ``FindingMention`` records; ``label-reports`` JSONL, :func:`~.store.stored_mentions`
and the scorer work on dicts in the ``FindingMention.to_json`` layout.  The public functions that take
mentions accept either form through :func:`as_mention` / :func:`as_mention_json`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from radloop.core.records import FindingMention

#: The record's fields, in order (``to_json`` leaves out ``modifiers``; :func:`mention_to_json` keeps them).
MENTION_FIELDS = tuple(item.name for item in fields(FindingMention))


def mention_to_json(mention: FindingMention) -> dict:
    """``mention.to_json()`` plus its ConText ``modifiers`` (a list), so that :func:`mention_from_json`
    gives the same record back."""
    return {**mention.to_json(), "modifiers": list(mention.modifiers)}


def mention_from_json(entry: Mapping[str, Any]) -> FindingMention:
    """A ``FindingMention`` from a dict in the ``to_json`` layout (``finding`` and ``status`` required;
    absent or null fields take their defaults, ``modifiers`` may be absent, other keys are ignored).

    Raises:
        ValueError: ``finding`` or ``status`` is missing.
    """
    missing = [name for name in ("finding", "status") if entry.get(name) is None]
    if missing:
        raise ValueError(f"mention {dict(entry)!r} has no {' or '.join(missing)}")
    # a null (a stored row's NULL evidence, say) takes the field's default
    values = {name: entry[name] for name in MENTION_FIELDS if entry.get(name) is not None}
    if "modifiers" in values:
        values["modifiers"] = tuple(values["modifiers"])
    return FindingMention(**values)


def as_mention(entry: FindingMention | Mapping[str, Any]) -> FindingMention:
    """``entry`` as a ``FindingMention`` (returned as is when it is one).

    Raises:
        TypeError: ``entry`` is neither a ``FindingMention`` nor a mapping.
    """
    if isinstance(entry, FindingMention):
        return entry
    if isinstance(entry, Mapping):
        return mention_from_json(entry)
    raise TypeError(f"expected a FindingMention or a dict in its to_json layout, got {type(entry).__name__}")


def as_mention_json(entry: FindingMention | Mapping[str, Any]) -> Mapping[str, Any]:
    """``entry`` as a dict in the ``to_json`` layout (a mapping is returned as is).

    Raises:
        TypeError: ``entry`` is neither a ``FindingMention`` nor a mapping.
    """
    if isinstance(entry, Mapping):
        return entry
    if isinstance(entry, FindingMention):
        return mention_to_json(entry)
    raise TypeError(f"expected a FindingMention or a dict in its to_json layout, got {type(entry).__name__}")


__all__ = ["MENTION_FIELDS", "as_mention", "as_mention_json", "mention_from_json", "mention_to_json"]
