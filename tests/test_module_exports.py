"""Every name a radloop module lists in ``__all__`` exists (a missing comma once joined two names into one)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

SKIP = {"radloop.app.main"}  # the Streamlit entry point draws the app when imported
PACKAGES = ["radloop.core", "radloop.labeling", "radloop.ssl", "radloop.retrieval", "radloop.app"]


def _modules() -> list[str]:
    """Every module of radloop's code packages (``radloop`` itself is a namespace without a walkable path)."""
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [info.name for info in pkgutil.iter_modules(package.__path__, package_name + ".")
                  if not info.ispkg and info.name not in SKIP]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_all_names_exist(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert all(isinstance(item, str) for item in exported), name
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what the module does not define: {missing}"
