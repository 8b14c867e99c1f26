"""Case-search filters: ``key=value`` items parsed, their values checked against the vocabulary and the catalog,
and the catalog images they allow.

``unknown`` selects the images without a value for the keys of :data:`NULLABLE_KEYS` (the group ``radloop info``
calls ``unknown``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

__all__ = ["FILTER_KEYS", "LATERALITY_SYNONYMS", "NULLABLE_KEYS", "UNKNOWN_VALUE", "allowed_image_ids",
           "check_filters", "filter_key", "parse_filters", "resolve_filter_values"]

#: Filter keys and the catalog column (on ``Image``) each one reads; ``finding`` is special.
FILTER_KEYS = ("body_region", "finding", "split", "dataset", "modality", "view", "laterality")
#: Laterality spellings that mean the same side: the vocabulary's words and DICOM's ImageLaterality codes.
LATERALITY_SYNONYMS = {"left": ("left", "l"), "right": ("right", "r"), "bilateral": ("bilateral", "b")}
#: The filter value for "not known": images whose column is empty, the group ``radloop info`` calls ``unknown``.
UNKNOWN_VALUE = "unknown"
#: Filter keys read from an ``Image`` column that may be empty (null): the ones ``unknown`` applies to.
NULLABLE_KEYS = ("body_region", "modality", "view", "laterality")


def filter_key(key: object) -> object:
    """A filter key as :data:`FILTER_KEYS` spells it: case and blanks ignored, ``-`` read as ``_``
    (``Body-Region`` -> ``body_region``); anything else (not a string) as given."""
    return key.strip().lower().replace("-", "_") if isinstance(key, str) else key


def parse_filters(items: list[str] | str | None) -> dict[str, list[str]]:
    """``["body_region=wrist", "finding=fracture"]`` -> ``{"body_region": ["wrist"], ...}``; a single string
    (``"body_region=wrist"``) is one filter.

    Raises:
        ValueError: an item without ``=`` or an unknown key (the valid keys are listed).
    """
    filters: dict[str, list[str]] = {}
    if isinstance(items, str):  # one filter, not its characters one by one ("filter 'b' must look like ...")
        items = [items]
    for item in items or []:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"filter {item!r} must look like key=value (keys: {', '.join(FILTER_KEYS)})")
        key, value = (part.strip() for part in item.split("=", 1))
        filters.setdefault(key, []).append(value)
    return check_filters(filters)  # keys as FILTER_KEYS spells them, a repeated value once


def check_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """Normalise filter keys (:func:`filter_key`: ``Body_Region`` or ``body-region`` is ``body_region``) and
    values (to lists), and reject unknown keys and empty values; ``None`` is read as ``unknown`` (no value).

    An empty list (``{"body_region": []}``) is refused like an empty value (the CLI's ``--filter body_region=``):
    "any of no values" would silently match nothing, and reading it as "no constraint" would silently search
    every region; leave the key out for no constraint.

    Raises:
        ValueError: an unknown key (the valid ones listed), an empty value or an empty list (the key named).
    """
    if filters is not None and not isinstance(filters, dict):
        raise ValueError(f"filters must be a dict key -> value(s) such as {{'body_region': 'wrist'}}, got "
                         f"{type(filters).__name__} {filters!r:.80}" + ("; parse_filters reads key=value strings"
                                                                      if isinstance(filters, (str, list)) else ""))
    normalised: dict[str, list[str]] = {}
    for given, value in (filters or {}).items():
        key = filter_key(given)
        if key not in FILTER_KEYS:
            raise ValueError(f"unknown filter {given!r}; valid: {', '.join(FILTER_KEYS)}")
        hint = f"; {key}={UNKNOWN_VALUE} selects the images without one" if key in NULLABLE_KEYS else ""
        items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not items:
            raise ValueError(f"filter {key!r} has no value (an empty list): leave the key out for no constraint"
                             f"{hint}")
        # a repeated value (``--filter body_region=wrist`` twice, or under two spellings of the key) is one value
        normalised[key] = list(dict.fromkeys([*normalised.get(key, []),
                                              *(UNKNOWN_VALUE if item is None else str(item) for item in items)]))
        if any(not item.strip() for item in normalised[key]):
            raise ValueError(f"filter {key!r} has an empty value" + (f" ({hint[2:]})" if hint else ""))
    return normalised


def _vocabulary(key: str) -> tuple[str, ...]:
    from radloop.core import vocabulary
    from radloop.core.splits import SPLITS

    return {"body_region": vocabulary.BODY_REGIONS, "finding": vocabulary.FINDINGS, "split": SPLITS,
            "laterality": vocabulary.LATERALITIES}.get(key, ())


def _stored_values(catalog, key: str) -> set[str]:
    """The distinct values the catalog holds for a filter key."""
    from radloop.core.schema import Annotation, Image, Study, WeakLabel

    columns = ([Study.split] if key == "split" else [WeakLabel.finding, Annotation.label] if key == "finding"
               else [getattr(Image, key)])
    with catalog.session() as session:
        return {value for column in columns for value in session.scalars(select(column).distinct())
                if value is not None and value != ""}


def resolve_filter_values(catalog, filters: dict[str, list[str]]) -> dict[str, list[str | None]]:
    """Map each filter value to the catalog values it matches, refusing values that match nothing known.

    A value is valid when it is in the vocabulary (``radloop.core.vocabulary``: body regions, findings,
    lateralities; ``radloop.core.splits.SPLITS``) or stored in the catalog (datasets, modalities, views and
    any other value ingest wrote).  Matching ignores case; laterality also takes DICOM's codes
    (``L`` / ``R`` / ``B`` for ``left`` / ``right`` / ``bilateral``).  For the keys of :data:`NULLABLE_KEYS`,
    ``unknown`` matches the images without a value (as ``radloop info`` groups them), resolved to ``None``
    (and to a stored ``unknown`` too, where ingest wrote that word).  A valid value that no image has yet
    matches nothing (no hits), not an error.

    Raises:
        ValueError: a value that is neither in the vocabulary nor in the catalog (the valid ones are listed).
    """
    resolved = {}
    for key, values in filters.items():
        stored = _stored_values(catalog, key)
        known = {value.lower(): value for value in (*_vocabulary(key), *sorted(stored))}
        matched = []
        for value in values:
            wanted = value.strip().lower()
            if key in NULLABLE_KEYS and wanted == UNKNOWN_VALUE:
                matched += [None, *sorted(item for item in stored if item.lower() == UNKNOWN_VALUE)]
                continue
            if key == "laterality":
                wanted_set = next((set(spellings) for spellings in LATERALITY_SYNONYMS.values()
                                   if wanted in spellings), {wanted})
            else:
                wanted_set = {wanted}
            if not wanted_set & set(known):
                if key == "laterality":
                    synonyms = {spelling for spellings in LATERALITY_SYNONYMS.values() for spelling in spellings}
                    valid = [f"{word} ({code.upper()})" for word, code in LATERALITY_SYNONYMS.values()] + sorted(
                        item for item in stored if item.lower() not in synonyms)
                else:
                    valid = sorted(set(known.values()), key=str.lower)
                if key in NULLABLE_KEYS and UNKNOWN_VALUE not in {item.lower() for item in valid}:
                    valid.append(f"{UNKNOWN_VALUE} (no value)")
                several = (f" (several values: repeat --filter {key}=VALUE, or a list in the Python API)"
                           if "," in value else "")
                if not _vocabulary(key):
                    raise ValueError(f"no image has {key} {value!r}; values in the catalog: "
                                     f"{', '.join(valid) or 'none'}{several}")
                if wanted == UNKNOWN_VALUE:  # e.g. finding=None: "no value" is no finding's value
                    several = f" ({UNKNOWN_VALUE}, or None, applies to {', '.join(NULLABLE_KEYS)} only)"
                raise ValueError(f"unknown {key} {value!r}; valid: {', '.join(valid)}{several}")
            matched += sorted(item for item in stored if item.lower() in wanted_set)
            if key == "finding":  # expert labels and weak labels are looked up by the vocabulary name too
                matched += [known[name] for name in sorted(wanted_set) if name in known]
        resolved[key] = list(dict.fromkeys(matched))
    return resolved


def allowed_image_ids(catalog, filters: dict[str, list[str | None]]) -> list[str] | None:
    """The catalog images that pass every filter (sorted), None when there are no filters.

    Args:
        filters: as :func:`resolve_filter_values` returns them (``None`` in a list: no value).
    """
    from radloop.core.schema import Image, Report, Study, WeakLabel
    from radloop.core.targets import image_labels

    if not filters:
        return None
    with catalog.session() as session:
        query = select(Image.id, Image.study_id).join(Study, Study.id == Image.study_id)
        for key, values in filters.items():
            if key == "split":
                query = query.where(Study.split.in_(values))
            elif key != "finding":
                column = getattr(Image, key)
                named = [value for value in values if value is not None]
                if None in values:  # "unknown": no value (null, or the empty string an older ingest wrote)
                    query = query.where(or_(column.in_(named), column.is_(None), column == ""))
                else:
                    query = query.where(column.in_(named))
        rows = session.execute(query).all()
        allowed = {image_id for image_id, _ in rows}
        if "finding" in filters:
            wanted = set(filters["finding"])
            positive_studies = set(session.scalars(
                select(Report.study_id).join(WeakLabel, WeakLabel.report_id == Report.id)
                .where(WeakLabel.finding.in_(wanted), WeakLabel.status == "positive")))
            expert = image_labels(catalog, sorted(allowed))  # images without an expert label: absent
            allowed = {image_id for image_id, study_id in rows
                       if any(expert.get(image_id, {}).get(name) == 1 for name in wanted)
                       or (study_id in positive_studies
                           and not any(expert.get(image_id, {}).get(name) == 0 for name in wanted))}
    return sorted(allowed)
