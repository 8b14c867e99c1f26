"""Lazy package exports (PEP 562): a package names its public API but imports a submodule on first use.

Usage, in a package's ``__init__.py``::

    __getattr__, __dir__ = lazy_exports(__name__, {"IndexManager": "index", ...}, __all__)

``radloop.labeling`` and ``radloop.retrieval`` use it so that commands which need one part of a package (case
search, the Label Studio rounds) do not pay for the heavy libraries of another (scikit-learn, medspaCy).

A name is read from its submodule on first use and then kept in the package, as an eager ``from .sub import name``
would keep it: replacing ``radloop.retrieval.search.search_cases`` afterwards is not seen as
``radloop.retrieval.search_cases``.  This matters to tests only, not to callers: a test patches the name where the
code under test looks it up, the package (``monkeypatch.setattr(radloop.retrieval, "search_cases", fake)``: the
app's ``from radloop.retrieval import search_cases`` reads it there) or the submodule, or both.  A test that patches
only the submodule before the package has read the name leaves its stand-in in the package if the code under test
is the first to read it there: patch the package too, before the submodule (its undo then restores the real
value there), or read the name through the package before patching.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str],
                 public: Iterable[str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the submodule (relative to ``package``) that defines it.
        public: the package's ``__all__`` (what ``dir()`` lists besides what is already loaded).
    """
    names = sorted(set(public))

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        vars(sys.modules[package])[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
