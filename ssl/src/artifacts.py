"""Model artefacts on disk: a module's weights as safetensors plus a JSON config (never pickle)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_artifact", "save_artifact", "write_safetensors", "write_weights_and_json"]


def write_safetensors(state: dict, path: str | Path, metadata: dict[str, str] | None = None, *,
                      named: str | Path | None = None) -> None:
    """``safetensors.torch.save_file`` to ``path``, flushed to disk, with a failed write as an ``OSError`` that
    names ``named`` (the file's final name; default ``path``) and the cause: safetensors raises a
    ``SafetensorError`` (no ``OSError``) on a full disk, a traceback in every command before."""
    from safetensors.torch import save_file

    from radloop.core.workspace import write_failure

    try:
        save_file(state, str(path), metadata=metadata)
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    except Exception as error:  # SafetensorError is an Exception subclass of its own, no OSError
        if not isinstance(error, OSError) and "os error" not in str(error):
            raise
        raise write_failure(error, named or path, f"the weights file {Path(named or path).name}") from None


def write_weights_and_json(target: Path, state: dict, weights_name: str, config_name: str, text: str, *,
                           metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` to ``target/weights_name`` (safetensors) and ``text`` to ``target/config_name``, both under
    temporary names, flushed to disk, then renamed: a full disk or a kill midway leaves the folder's earlier files
    (or none), never half a weights file beside a config that names it.

    Raises:
        OSError: a file could not be written; the message names it and the cause, and no temporary file is left.
    """
    from radloop.core.workspace import write_failure

    weights, config = (target / f".{name}.{os.getpid()}.tmp" for name in (weights_name, config_name))
    try:
        write_safetensors(state, weights, metadata, named=target / weights_name)
        try:
            with open(config, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise write_failure(error, target / config_name, f"the file {config_name}") from None
        os.replace(weights, target / weights_name)
        os.replace(config, target / config_name)
    finally:
        weights.unlink(missing_ok=True)
        config.unlink(missing_ok=True)


def save_artifact(module: Any, folder: str | Path, weights_name: str, config_name: str, meta: dict) -> Path:
    """Write ``module.state_dict()`` to ``folder/weights_name`` and ``meta`` to ``folder/config_name``.

    Both files are written under temporary names, flushed to disk, then renamed: a full disk or a kill midway
    leaves the folder's earlier files (or none), never half a weights file where a whole one was.

    Raises:
        OSError: a file could not be written (a full disk, a read-only folder); the message names it and the
            cause (:func:`radloop.core.workspace.write_failure`), and no temporary file is left.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    # predictors may hold their model on the GPU (they move there to predict): weights are saved from the CPU
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    write_weights_and_json(target, state, weights_name, config_name, json.dumps(meta, indent=2))
    return target


def read_artifact(folder: str | Path, weights_name: str, config_name: str) -> tuple[dict, dict]:
    """The ``(state_dict, meta)`` written by :func:`save_artifact`.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is cut short or damaged (a crash, a copy stopped midway): the message names it.
    """
    from safetensors.torch import load_file

    source = Path(folder)
    for name in (config_name, weights_name):
        if not (source / name).is_file():
            raise FileNotFoundError(errno.ENOENT, "model file missing (restore the folder or train again)",
                                    str(source / name))
    try:
        meta = json.loads((source / config_name).read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"the model file {source / config_name} is damaged ({error}): restore the folder or "
                         "train again") from None
    try:
        return load_file(str(source / weights_name)), meta
    except Exception as error:  # SafetensorError (cut short, overwritten) is no OSError
        if isinstance(error, OSError):
            raise
        raise ValueError(f"the model file {source / weights_name} is damaged ({error}): restore the folder or "
                         "train again") from None
