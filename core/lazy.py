"""Lazy package exports (PEP 562): a package names its public API but imports a submodule on first use.

Usage, in a package's ``__init__.py``::

    __getattr__, __dir__ = lazy_exports(__name__, {"IndexManager": "index", ...}, __all__)

``radloop.labeling`` and ``radloop.retrieval`` use it so that commands which need one part of a package (case
search, the Label Studio rounds) do not pay for the heavy libraries of another (scikit-learn, medspaCy).
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
