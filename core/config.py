"""One config system: YAML files validated into pydantic models, dotted command-line overrides.

Every job's tunables live in ``configs/*.yaml``.  Models declare ``extra="forbid"`` so that an unknown
key fails fast.  Every problem is reported on one line of its own: where the value came from (the file and
its line, or the ``--set`` override), the dotted key, what is wrong and what is allowed, with a "did you
mean" for a near-miss key or choice (:func:`did_you_mean`).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

#: (path parts) -> first line (1-based) of that key or list item in a config file
LineMap = dict[tuple[Any, ...], int]


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the offending keys."""


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``value`` (difflib), or ``""`` when none is close."""
    names = [str(choice) for choice in choices]
    matches = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    if not matches and str(value):  # a shortened name: 'avg' for 'avg_tokens'
        matches = [name for name in names if name.lower().startswith(str(value).lower())][:2]
        matches = matches if len(matches) == 1 else []
    return f" (did you mean {matches[0]!r}?)" if matches else ""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1's base-60 numbers and dates: ``max_time: 1:00:00:00`` stays the
    text it reads as (sexagesimal parsing made it the integer 216000), in files and in ``--set`` values alike."""


# dates are left as text too: no setting is a date, and `name: 2024-05-01` (a date object) stopped the loading
# with a TypeError traceback
_DROPPED_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_ConfigLoader.add_implicit_resolver(  # PyYAML's patterns less their last, base-60 alternative
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _override_keys(override: str) -> tuple[list[str], str]:
    """(key parts, raw value) of ``a.b.c=value``.

    Raises:
        ConfigError: no ``=``, nothing before it, or an empty part in the dotted key (``a..b``, ``.a``, ``a.``).
    """
    if "=" not in override:
        raise ConfigError(f"--set {override}: an override must look like key.path=value (e.g. "
                          f"trainer.max_steps=100)")
    dotted, raw = override.split("=", 1)
    keys = [key.strip() for key in dotted.strip().split(".")]
    if not dotted.strip():
        raise ConfigError(f"--set {override}: no key before '=' (it must look like key.path=value)")
    if any(not key for key in keys):
        raise ConfigError(f"--set {override}: the key {dotted.strip()!r} has an empty part (two dots in a row, or a "
                          f"dot at an end): write it as {'.'.join(key for key in keys if key)!r}")
    return keys, raw


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars/lists; nothing after
    ``=`` sets null).

    Raises:
        ConfigError: an override without ``=``, with an empty key or key part, or one that goes into a value
            as if it were a section (``data.batch_size.x=1``).
    """
    result = copy.deepcopy(data)
    for override in overrides or ():
        keys, raw = _override_keys(override)
        node = result
        for depth, key in enumerate(keys[:-1]):
            if node.get(key) is None:  # absent, or "trainer:" with nothing under it
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override}: {'.'.join(keys[:depth + 1])!r} is a value ({node!r}), not a "
                                  f"section with keys")
        try:
            node[keys[-1]] = _parse_value(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise ConfigError(f"--set {override}: the value is not valid YAML ({problem})") from None
    return result


# ------------------------------------------------------------------------------------------ reading files
def _key_lines(node: yaml.Node | None, path: tuple[Any, ...], lines: LineMap, file: Path,
               walked: set[int] | None = None) -> None:
    """Record each key's line in ``lines``; refuse a key written twice in one mapping (PyYAML keeps the last
    silently: a tuned value above it would be dropped without a word).  An alias is walked once (``*anchor``
    may point back up)."""
    walked = set() if walked is None else walked
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            dotted = ".".join(str(part) for part in (*path, key_node.value))
            if key_node.value in seen:
                raise ConfigError(f"config file {file} sets {dotted!r} twice (lines {seen[key_node.value]} and "
                                  f"{line}): YAML would silently keep only the last one; remove one of them")
            seen[key_node.value] = line
            lines[(*path, key_node.value)] = line
            _key_lines(value_node, (*path, key_node.value), lines, file, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _key_lines(item, (*path, index), lines, file, walked)


def _yaml_problem(file: Path, error: yaml.YAMLError, text: str) -> ConfigError:
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark and problem else str(error)
    hint = ""
    if mark is not None and "\t" in (text.splitlines()[mark.line:mark.line + 1] or [""])[0]:
        hint = ": YAML indents and separates with spaces, not tabs; replace the tab(s) on that line"
    return ConfigError(f"config file {file} is not valid YAML ({' '.join(where.split())}){hint}")


def _read_settings(file: Path) -> tuple[dict[str, Any], LineMap]:
    """The top-level mapping of YAML ``file`` and the line of each of its keys.

    A file without settings is refused rather than read as "all defaults": an empty pretraining config
    would otherwise start an hours-long default run.  A job's defaults come from passing no file at all.
    """
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {file}: {error}") from None
    loader = _ConfigLoader(text)
    lines: LineMap = {}
    try:
        node = loader.get_single_node()
        _key_lines(node, (), lines, file)
        loaded = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as error:
        raise _yaml_problem(file, error, text) from None
    finally:
        loader.dispose()
    if loaded is None or loaded == {}:
        raise ConfigError(f"config file {file} has no settings (nothing but blank lines, comments or an empty "
                          f"value): write the job's settings in it, or start from one of radloop's configs in "
                          f"{shipped_configs()}")
    if not isinstance(loaded, dict):
        found = "a list" if isinstance(loaded, list) else f"the single value {str(loaded)[:40]!r}"
        raise ConfigError(f"config file {file} must be a mapping of settings (key: value) at the top level, "
                          f"not {found}")
    return loaded, lines


# ------------------------------------------------------------------------------------------ error messages
def _section_model(annotation: Any) -> type[BaseModel] | None:
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
        if field is None or (model := _section_model(field.annotation)) is None:
            return None
    return model


def _all_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        keys.append((*prefix, name))
        if (section := _section_model(field.annotation)) is not None:
            keys += _all_keys(section, (*prefix, name))
    return keys


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
            overrides: Sequence[str], shown: Sequence[str]) -> str:
    """Where the value at ``path`` came from: the override that set it (or a section around it), else the
    file's line; a check across a section's settings that overrides took part in names the file and them all."""
    texts = tuple(map(str, path))
    every = (f"{file} with " if file else "defaults with ") + f"--set {' '.join(shown)}"
    for override, as_given in reversed(list(zip(overrides, shown))):
        keys = tuple(key.strip() for key in override.split("=", 1)[0].strip().split("."))
        if texts[:len(keys)] == keys:
            return f"--set {as_given}" if file is None else f"{file}, --set {as_given}"
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


def _sections_to_override(data: dict[str, Any], model: type[BaseModel], overrides: Sequence[str] | None
                          ) -> dict[str, Any]:
    """``data`` with each section an override goes into, and ``data`` leaves out, filled with that section's
    defaults: ``--set trainer.precision=16`` on a file without ``trainer:`` changes the default trainer (its
    1000 steps kept), instead of replacing it by a trainer of that one setting."""
    for override in overrides or ():
        if "=" not in override:
            continue  # apply_overrides says what is wrong with it
        keys = [key.strip() for key in override.split("=", 1)[0].strip().split(".")]
        node, section = data, model
        for key in keys[:-1]:
            field = section.model_fields.get(key) if section is not None else None
            inner = _section_model(field.annotation) if field is not None else None
            if not isinstance(node, dict) or inner is None:
                break
            if node.get(key) is None and not field.is_required():  # absent, or "trainer:" with nothing under it
                default = field.get_default(call_default_factory=True)
                if isinstance(default, BaseModel):
                    node[key] = default.model_dump(mode="json")
            node, section = node.get(key), inner
    return data


def _format_validation_error(error: ValidationError, model: type[BaseModel], file: str | None, lines: LineMap,
                             overrides: Sequence[str], shown: Sequence[str]) -> str:
    """One line per problem, in the file's order: ``invalid config <file, line / --set override>: <key>: <what
    is wrong>``."""
    def line_of(item: dict[str, Any]) -> int:
        path = tuple(item["loc"])
        return next((lines[path[:length]] for length in range(len(path), 0, -1) if path[:length] in lines), 0)

    return "\n".join(f"invalid config {_origin(tuple(item['loc']), model, file, lines, overrides, shown)}: "
                     f"{_problem(model, item)}" for item in sorted(error.errors(), key=line_of))


# ------------------------------------------------------------------------------------------ files
def shipped_configs() -> Path:
    """The ``configs/`` folder that ships with radloop's source (next to ``core/``)."""
    return Path(__file__).resolve().parents[1] / "configs"


def find_config(file: Path) -> Path:
    """``file`` itself, else (for a relative path such as ``configs/ssl/simclr_cpu.yaml`` given outside the
    repository) the shipped config of that name; a clear error naming where the shipped ones are otherwise."""
    if file.is_file():
        return file
    shipped = shipped_configs()
    if not file.is_absolute():
        parts = file.parts[1:] if file.parts and file.parts[0] == "configs" else file.parts
        candidate = shipped.joinpath(*parts) if parts else shipped
        if candidate.is_file():
            return candidate
    hint = f" (radloop's own configs are in {shipped})" if shipped.is_dir() else ""
    raise ConfigError(f"config file not found: {file}{hint}")


def load_config(path: str | Path | None, model: type[ModelT], overrides: list[str] | None = None, *,
                prefix: str = "") -> ModelT:
    """Load a YAML file (or just defaults when ``path`` is None) into ``model``.

    ``prefix``: the overrides are written with it (``bench.fractions=[1.0]`` for the bench config's
    ``fractions``); it is taken off to apply them, and messages show them as written.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, sets a key twice, has no settings (empty, only
            comments, ``null``), is not a mapping, or does not validate (one line per problem, each naming the
            file's line or the override, the key, and the key or value likely meant).
    """
    data: dict[str, Any] = {}
    lines: LineMap = {}
    if path is not None:
        data, lines = _read_settings(find_config(Path(path)))
    shown = list(overrides or ())
    applied = [override.removeprefix(prefix) for override in shown]
    data = apply_overrides(_sections_to_override(data, model, applied), applied)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, model, None if path is None else str(path), lines,
                                                   applied, shown)) from None


def save_resolved_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML next to a checkpoint, index or round."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    return target
