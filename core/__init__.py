"""Shared core of radloop: typed records, the catalog, config loading, workspace and image I/O.

Everything the product's parts (labeling, ssl, retrieval, app) exchange goes through here.
Imports point inward: no module in core imports from the other parts.

The names are imported on first use (PEP 562): ``import radloop.retrieval`` / ``radloop.labeling`` (which load
``radloop.core.lazy``) do not pay for pydantic and the config loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radloop.core.lazy import lazy_exports

#: public name -> the submodule that defines it
_EXPORTS = {
    "ConfigError": "config", "apply_overrides": "config", "did_you_mean": "config", "load_config": "config",
    "save_resolved_config": "config",
    "export_dataset": "dataset_export",
    "Workspace": "workspace", "resolve_workspace": "workspace",
}

__all__ = [
    "ConfigError",
    "Workspace",
    "apply_overrides",
    "did_you_mean",
    "export_dataset",
    "load_config",
    "resolve_workspace",
    "save_resolved_config",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from radloop.core.config import ConfigError, apply_overrides, did_you_mean, load_config, save_resolved_config
    from radloop.core.dataset_export import export_dataset
    from radloop.core.workspace import Workspace, resolve_workspace
