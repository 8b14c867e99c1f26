"""One config system: YAML files validated into pydantic models, dotted command-line overrides.

Every job's tunables live in ``configs/*.yaml``.  Models declare ``extra="forbid"`` so that an unknown
key fails fast.  Every problem is reported on one line of its own: where the value came from (the file and
its line, or the ``--set`` override), the dotted key, what is wrong and what is allowed, with a "did you
mean" for a near-miss key or choice (:func:`did_you_mean`).  YAML 1.1 reads an unquoted ``no``, ``off``, ``yes``
or ``on`` as a boolean: where the setting is text (a job name), an override keeps the word and a file is refused
with a line saying to quote it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from radloop.core.config_messages import LineMap, did_you_mean, format_validation_error, section_model, wants_text

__all__ = ["ConfigError", "StrictModel", "apply_overrides", "config_lines", "did_you_mean", "find_config",
           "load_config", "save_resolved_config", "shipped_configs"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the offending keys."""


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


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


#: (path parts) -> the word YAML 1.1 read as a boolean there (``no``, ``on``, ``Yes``...)
BoolWords = dict[tuple[Any, ...], str]


def _bool_words(node: yaml.Node | None, path: tuple[Any, ...], words: BoolWords,
                walked: set[int] | None = None) -> BoolWords:
    """Record in ``words`` each unquoted scalar under ``node`` that YAML reads as a boolean, with its text: a
    setting that expects text (a job name ``no``) gets the word back, or a message saying to quote it."""
    walked = set() if walked is None else walked
    if node is None or id(node) in walked:
        return words
    walked.add(id(node))
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool" and node.style is None:
        words[path] = node.value
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                _bool_words(value_node, (*path, key_node.value), words, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _bool_words(item, (*path, index), words, walked)
    return words


def _parse_value(text: str) -> tuple[Any, BoolWords]:
    """The YAML value of ``text`` and its boolean words (:func:`_bool_words`)."""
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), _bool_words(node, (), {})
    finally:
        loader.dispose()


def _override_keys(override: str, label: str | None = None) -> tuple[list[str], str]:
    """(key parts, raw value) of ``a.b.c=value``; messages start with ``label`` (default ``--set <override>``).

    Raises:
        ConfigError: no ``=``, nothing before it, or an empty part in the dotted key (``a..b``, ``.a``, ``a.``).
    """
    label = label or f"--set {override}"
    if "=" not in override:
        raise ConfigError(f"{label}: an override must look like key.path=value (e.g. trainer.max_steps=100)")
    dotted, raw = override.split("=", 1)
    keys = [key.strip() for key in dotted.strip().split(".")]
    if not dotted.strip():
        raise ConfigError(f"{label}: no key before '=' (it must look like key.path=value)")
    if any(not key for key in keys):
        raise ConfigError(f"{label}: the key {dotted.strip()!r} has an empty part (two dots in a row, or a "
                          f"dot at an end): write it as {'.'.join(key for key in keys if key)!r}")
    return keys, raw


def _apply(data: dict[str, Any], overrides: Sequence[str], labels: Sequence[str | None]
           ) -> tuple[dict[str, Any], dict[tuple[Any, ...], tuple[str, int]]]:
    """:func:`apply_overrides`, plus the boolean words of the values set: path -> (word, override index)."""
    result = copy.deepcopy(data)
    words: dict[tuple[Any, ...], tuple[str, int]] = {}
    for index, (override, label) in enumerate(zip(overrides, labels)):
        keys, raw = _override_keys(override, label)
        label = label or f"--set {override}"
        node = result
        for depth, key in enumerate(keys[:-1]):
            if node.get(key) is None:  # absent, or "trainer:" with nothing under it
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ConfigError(f"{label}: {'.'.join(keys[:depth + 1])!r} is a value ({node!r}), not a "
                                  f"section with keys")
        try:
            node[keys[-1]], found = _parse_value(raw) if raw.strip() else (None, {})
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise ConfigError(f"{label}: the value is not valid YAML ({problem})") from None
        words = {path: word for path, word in words.items() if path[:len(keys)] != tuple(keys)}
        words.update({(*keys, *path): (word, index) for path, word in found.items()})
    return result, words


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars/lists; nothing after
    ``=`` sets null).

    Raises:
        ConfigError: an override without ``=``, with an empty key or key part, or one that goes into a value
            as if it were a section (``data.batch_size.x=1``).
    """
    return _apply(data, list(overrides or ()), [None] * len(overrides or ()))[0]


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


def _read_settings(file: Path) -> tuple[dict[str, Any], LineMap, BoolWords]:
    """The top-level mapping of YAML ``file``, the line of each of its keys and its boolean words.

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
        words = _bool_words(node, (), {})
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
    return loaded, lines, words


def config_lines(path: str | Path) -> LineMap:
    """The line of each key and list item of config file ``path`` (see :func:`load_config` for its errors)."""
    return _read_settings(find_config(Path(path)))[1]


# ------------------------------------------------------------------------------------------ values as written
def _keep_words(data: dict[str, Any], model: type[BaseModel], file: str | None, lines: LineMap,
                file_words: BoolWords, set_words: dict[tuple[Any, ...], tuple[str, int]],
                overridden: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """YAML 1.1 reads ``no``, ``off``, ``yes``, ``on`` as booleans: where the setting takes text (a job name, a
    class name), an override's word is kept as written; a file's is refused with a line saying to quote it."""
    for path, (word, _index) in set_words.items():
        node = data
        if wants_text(model, path):
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = word
    problems = []
    for path, word in file_words.items():
        if any(path[:len(keys)] == keys for keys in overridden) or not wants_text(model, path):
            continue
        line = next((lines[path[:length]] for length in range(len(path), 0, -1) if path[:length] in lines), 0)
        dotted = ".".join(map(str, path))
        problems.append(f"invalid config {file}, line {line}: {dotted}: YAML reads the unquoted word {word} as the "
                        f"boolean {str(word.lower() in ('yes', 'on', 'true')).lower()}, but this setting is text: "
                        f"quote it (\"{word}\") to keep the word")
    if problems:
        raise ConfigError("\n".join(problems))
    return data


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
            inner = section_model(field.annotation) if field is not None else None
            if not isinstance(node, dict) or inner is None:
                break
            if node.get(key) is None and not field.is_required():  # absent, or "trainer:" with nothing under it
                default = field.get_default(call_default_factory=True)
                if isinstance(default, BaseModel):
                    node[key] = default.model_dump(mode="json")
            node, section = node.get(key), inner
    return data


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
                prefix: str = "", origins: Sequence[str | None] | None = None) -> ModelT:
    """Load a YAML file (or just defaults when ``path`` is None) into ``model``.

    ``prefix``: the overrides are written with it (``bench.fractions=[1.0]`` for the bench config's
    ``fractions``); it is taken off to apply them, and messages show them as written.  ``origins``: for each
    override, how messages name where it came from (None: ``--set <override>``), e.g. a bench file's entry.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, sets a key twice, has no settings (empty, only
            comments, ``null``), is not a mapping, writes an unquoted ``no``/``yes``/``on``/``off`` where text is
            expected, or does not validate (one line per problem, each naming the file's line or the override,
            the key, and the key or value likely meant).
    """
    data: dict[str, Any] = {}
    lines: LineMap = {}
    file_words: BoolWords = {}
    if path is not None:
        data, lines, file_words = _read_settings(find_config(Path(path)))
    shown = list(overrides or ())
    applied = [override.removeprefix(prefix) for override in shown]
    labels = [origin or f"--set {as_given}" for origin, as_given in zip(origins or [None] * len(shown), shown)]
    data, set_words = _apply(_sections_to_override(data, model, applied), applied, labels)
    overridden = [tuple(key.strip() for key in override.split("=", 1)[0].strip().split(".")) for override in applied]
    data = _keep_words(data, model, None if path is None else str(path), lines, file_words, set_words, overridden)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, model, None if path is None else str(path), lines,
                                                   applied, labels)) from None


def save_resolved_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML next to a checkpoint, index or round."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    return target
