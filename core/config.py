"""One config system: YAML files validated into pydantic models, dotted command-line overrides.

Every job's tunables live in ``configs/*.yaml``.  Models declare ``extra="forbid"`` so that an unknown
key fails fast with its dotted path named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the offending keys."""


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars/lists).

    Raises:
        ConfigError: an override without ``=``.
    """
    result = json.loads(json.dumps(data))  # deep copy of plain data
    for override in overrides or ():
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.path=value")
        dotted, raw = override.split("=", 1)
        keys = [k for k in dotted.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"override {override!r} has an empty key")
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {key!r} is not a section")
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return result


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{where}'")
        else:
            lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


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


def _read_settings(file: Path) -> dict[str, Any]:
    """The top-level mapping of YAML ``file``.

    A file without settings is refused rather than read as "all defaults": an empty pretraining config
    would otherwise start an hours-long default run.  A job's defaults come from passing no file at all.
    """
    try:
        loaded = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {file}: {error}") from None
    except yaml.YAMLError as error:
        mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark and problem else str(error)
        raise ConfigError(f"config file {file} is not valid YAML ({' '.join(where.split())})") from None
    if loaded is None or loaded == {}:
        raise ConfigError(f"config file {file} has no settings (nothing but blank lines, comments or an empty "
                          f"value): write the job's settings in it, or start from one of radloop's configs in "
                          f"{shipped_configs()}")
    if not isinstance(loaded, dict):
        found = "a list" if isinstance(loaded, list) else f"the single value {str(loaded)[:40]!r}"
        raise ConfigError(f"config file {file} must be a mapping of settings (key: value) at the top level, "
                          f"not {found}")
    return loaded


def load_config(path: str | Path | None, model: type[ModelT], overrides: list[str] | None = None) -> ModelT:
    """Load a YAML file (or just defaults when ``path`` is None) into ``model``.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, has no settings (empty, only comments,
            ``null``), is not a mapping, or does not validate (unknown keys named).
    """
    data: dict[str, Any] = {}
    source = "(built-in defaults)"
    if path is not None:
        source = str(path)
        data = _read_settings(find_config(Path(path)))
    data = apply_overrides(data, overrides)
    if overrides:
        source += " with --set " + " ".join(overrides)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def save_resolved_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML next to a checkpoint, index or round."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    return target
