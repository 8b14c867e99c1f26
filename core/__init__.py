"""Shared core of radloop: typed records, the catalog, config loading, workspace and image I/O.

Everything the product's parts (labeling, ssl, retrieval, app) exchange goes through here.
Imports point inward: no module in core imports from the other parts.
"""

from radloop.core.config import ConfigError, apply_overrides, did_you_mean, load_config, save_resolved_config
from radloop.core.workspace import Workspace, resolve_workspace

__all__ = [
    "ConfigError",
    "Workspace",
    "apply_overrides",
    "did_you_mean",
    "load_config",
    "resolve_workspace",
    "save_resolved_config",
]
