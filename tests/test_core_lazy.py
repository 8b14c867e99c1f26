"""Lazy package exports: the public names resolve on first use, and light commands skip heavy libraries."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from radloop.core.lazy import lazy_exports

HEAVY = ("medspacy", "spacy", "torch", "sklearn", "scipy")


def _package(monkeypatch) -> types.ModuleType:
    """A throwaway package ``fakepkg`` whose submodule ``fakepkg.sub`` defines ``VALUE``."""
    package = types.ModuleType("fakepkg")
    package.__path__ = []
    sub = types.ModuleType("fakepkg.sub")
    sub.VALUE = 42
    monkeypatch.setitem(sys.modules, "fakepkg", package)
    monkeypatch.setitem(sys.modules, "fakepkg.sub", sub)
    package.__getattr__, package.__dir__ = lazy_exports("fakepkg", {"VALUE": "sub", "GONE": "sub"}, ["VALUE", "GONE"])
    return package


def test_lazy_name_resolves_once_and_is_cached(monkeypatch):
    package = _package(monkeypatch)
    assert "VALUE" not in vars(package)
    assert package.VALUE == 42
    assert vars(package)["VALUE"] == 42  # later lookups are plain attributes
    assert {"VALUE", "GONE"} <= set(dir(package))


def test_unknown_name_is_an_attribute_error(monkeypatch):
    package = _package(monkeypatch)
    with pytest.raises(AttributeError, match="fakepkg.*nothing"):
        package.nothing
    with pytest.raises(AttributeError):  # named in the table but missing from its module
        package.GONE


@pytest.mark.parametrize("module", ["radloop.labeling.ls_consensus", "radloop.labeling.ls_sync",
                                    "radloop.retrieval.search", "radloop.retrieval.index"])
def test_light_modules_do_not_import_heavy_libraries(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


def test_package_names_still_resolve():
    import radloop.labeling as labeling
    import radloop.retrieval as retrieval

    for package in (labeling, retrieval):
        for name in package.__all__:
            assert getattr(package, name) is not None, name
