"""Config error messages: where a value came from and what is wrong, one line each (used by ``core.config``).

Also walks a config model's schema: the section model at a dotted path, and whether a setting takes text.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["did_you_mean", "format_validation_error", "section_model", "wants_text"]

#: (path parts) -> first line (1-based) of that key or list item in a config file
LineMap = dict[tuple[Any, ...], int]


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``value`` (difflib), or ``""`` when none is close."""
    names = [str(choice) for choice in choices]
    matches = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    if not matches and str(value):  # a shortened name: 'avg' for 'avg_tokens'
        matches = [name for name in names if name.lower().startswith(str(value).lower())][:2]
        matches = matches if len(matches) == 1 else []
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The config model ``annotation`` is (``Optional`` unwrapped), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [arg for arg in typing.get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The section model at ``path`` (``()``: ``model`` itself), or None when the path is not a section."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None or (model := section_model(field.annotation)) is None:
            return None
    return model


def _all_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        keys.append((*prefix, name))
        if (section := section_model(field.annotation)) is not None:
            keys += _all_keys(section, (*prefix, name))
    return keys


def _arms(annotation: Any) -> list[Any]:
    """The types ``annotation`` accepts (``Annotated``, ``Optional`` and unions unwrapped)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _arms(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [arm for arg in typing.get_args(annotation) for arm in _arms(arg)]
    return [annotation]


def wants_text(model: type[BaseModel], path: tuple[Any, ...]) -> bool:
    """Whether the setting at ``path`` (list items and dict values included) takes text but not a boolean."""
    arms: list[Any] = [model]
    for part in path:
        inner: list[Any] = []
        for arm in arms:
            origin, args = typing.get_origin(arm), typing.get_args(arm)
            if isinstance(arm, type) and issubclass(arm, BaseModel) and str(part) in arm.model_fields:
                inner += _arms(arm.model_fields[str(part)].annotation)
            elif origin in (list, set, frozenset) and args and isinstance(part, int):
                inner += _arms(args[0])
            elif origin is tuple and args and isinstance(part, int):
                inner += _arms(args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)])
            elif origin is dict and len(args) == 2:
                inner += _arms(args[1])
        arms = inner

    def takes(kind: type) -> bool:
        return any(arm is kind or (typing.get_origin(arm) is typing.Literal and any(
            type(choice) is kind for choice in typing.get_args(arm))) for arm in arms)

    return takes(str) and not takes(bool)


def _unknown_key(model: type[BaseModel], path: tuple[Any, ...]) -> str:
    """``unknown key 'a.b'`` and the key meant: a near miss in the same section, the same name in another
    section (a wrong indent), else the keys the section allows."""
    dotted = ".".join(str(part) for part in path)
    parent, name = path[:-1], str(path[-1])
    section = _model_at(model, parent)
    allowed = list(section.model_fields) if section is not None else []
    near = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if near:
        return f"unknown key {dotted!r} (did you mean {'.'.join((*map(str, parent), near[0]))!r}?)"
    everywhere = [".".join(key) for key in _all_keys(model)]
    elsewhere = [key for key in everywhere if key.rsplit(".", 1)[-1] == name]
    elsewhere = elsewhere or difflib.get_close_matches(dotted, everywhere, n=1, cutoff=0.75)
    if elsewhere:  # the same name in several sections (batch_size of probe, finetune, detect): all of them
        named = [repr(key) for key in elsewhere]
        choices = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
        return f"unknown key {dotted!r} (did you mean {choices}?)"
    where = f"in {'.'.join(map(str, parent))}" if parent else "at the top level"
    return f"unknown key {dotted!r}; the keys {where} are {', '.join(allowed)}"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(model: type[BaseModel], item: dict[str, Any]) -> str:
    """One pydantic error as ``key: what is wrong (got ...; did you mean ...)``, without pydantic's wording
    ("Value error, ", ``<root>``)."""
    path = tuple(item["loc"])
    if item["type"] == "extra_forbidden":
        return _unknown_key(model, path)
    dotted = ".".join(str(part) for part in path)
    message = item["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    value = item.get("input")
    if item["type"] in ("value_error", "assertion_error"):
        names_itself = not dotted or f"{dotted}." in message or f"{dotted}=" in message  # a check across keys
        return message if names_itself else f"{dotted}: {message}"
    section = _model_at(model, path) if path else None
    if item["type"] in ("model_type", "model_attributes_type", "dict_type") and section is not None:
        if isinstance(value, list):  # "- key: value" lines under a section
            return (f"{dotted} is a section of settings ({', '.join(section.model_fields)}), not a list: write its "
                    f"key: value lines without '-'")
        if value is None:  # "trainer:" with nothing under it, or --set trainer=
            return (f"{dotted} is empty (null): write its settings indented under it "
                    f"({', '.join(section.model_fields)}), or leave it out for the defaults")
        return (f"{dotted} is a section of settings ({', '.join(section.model_fields)}), not a single value "
                f"(got {_shown(value)})")
    if item["type"] == "missing":
        return f"missing required key {dotted!r}"
    detail = f"got {_shown(value)}" if isinstance(value, (str, int, float, bool, type(None))) else ""
    if item["type"] == "list_type" and isinstance(value, (str, int, float)):
        detail += f"; write a list: [{value}]"
    if item["type"] == "literal_error" and isinstance(value, str):
        choices = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
        hint = did_you_mean(value, choices)
        detail += f"; {hint.strip(' ()')}" if hint else ""
    return f"{dotted}: {message}" + (f" ({detail})" if detail else "")


def _origin(path: tuple[Any, ...], model: type[BaseModel], file: str | None, lines: LineMap,
            overrides: Sequence[str], labels: Sequence[str]) -> str:
    """Where the value at ``path`` came from: the override that set it (its label, ``--set ...`` or a bench
    file's entry), else the file's line; a check across a section's settings that overrides took part in names
    the file and them all."""
    texts = tuple(map(str, path))
    plain = all(label.startswith("--set ") for label in labels)
    every = (f"{file} with " if file else "defaults with ") + (
        f"--set {' '.join(label.removeprefix('--set ') for label in labels)}" if plain else "; ".join(labels))
    for override, label in reversed(list(zip(overrides, labels))):
        keys = tuple(key.strip() for key in override.split("=", 1)[0].strip().split("."))
        if texts[:len(keys)] == keys:
            return label if file is None else f"{file}, {label}"
    section = not path or _model_at(model, path) is not None
    if section and any(tuple(key.strip() for key in override.split("=", 1)[0].strip().split("."))[:len(texts)]
                       == texts for override in overrides):
        return every
    if file is None:
        return every if overrides else "(defaults)"
    for length in range(len(path), 0, -1):
        if path[:length] in lines:
            return f"{file}, line {lines[path[:length]]}"
    return file


def format_validation_error(error: ValidationError, model: type[BaseModel], file: str | None, lines: LineMap,
                             overrides: Sequence[str], labels: Sequence[str]) -> str:
    """One line per problem, in the file's order: ``invalid config <file, line / --set override>: <key>: <what
    is wrong>``."""
    def line_of(item: dict[str, Any]) -> int:
        path = tuple(item["loc"])
        return next((lines[path[:length]] for length in range(len(path), 0, -1) if path[:length] in lines), 0)

    return "\n".join(f"invalid config {_origin(tuple(item['loc']), model, file, lines, overrides, labels)}: "
                     f"{_problem(model, item)}" for item in sorted(error.errors(), key=line_of))
