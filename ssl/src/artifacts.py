"""Model artefacts on disk: a module's weights as safetensors plus a JSON config (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_artifact", "save_artifact"]


def save_artifact(module: Any, folder: str | Path, weights_name: str, config_name: str, meta: dict) -> Path:
    """Write ``module.state_dict()`` to ``folder/weights_name`` and ``meta`` to ``folder/config_name``."""
    from safetensors.torch import save_file

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    # predictors may hold their model on the GPU (they move there to predict): weights are saved from the CPU
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    save_file(state, str(target / weights_name))
    (target / config_name).write_text(json.dumps(meta, indent=2))
    return target


def read_artifact(folder: str | Path, weights_name: str, config_name: str) -> tuple[dict, dict]:
    """The ``(state_dict, meta)`` written by :func:`save_artifact`."""
    from safetensors.torch import load_file

    source = Path(folder)
    meta = json.loads((source / config_name).read_text())
    return load_file(str(source / weights_name)), meta
