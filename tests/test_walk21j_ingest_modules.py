"""Walk 21j: ingest's modules, one concept each (STYLE.md: ~400 lines at most), with the same public imports.

``core/ingest.py`` (406 lines) and ``core/ingest_writer.py`` (403) were split along their seams: the run summary
and its interrupt (``ingest_summary``), the render files' lifecycle (``ingest_renders``), the duplicate keys a
batch is checked against (``ingest_keys``).  What was imported from ``radloop.core.ingest`` still is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SPLIT = ["ingest", "ingest_writer", "ingest_summary", "ingest_renders", "ingest_keys"]


@pytest.mark.parametrize("name", SPLIT)
def test_the_module_is_at_most_400_lines_and_its_all_resolves(name):
    lines = len(Path(REPO_ROOT, "core", f"{name}.py").read_text().splitlines())
    assert lines <= 400, f"core/{name}.py has {lines} lines"
    module = importlib.import_module(f"radloop.core.{name}")
    assert module.__all__ and [symbol for symbol in module.__all__ if not hasattr(module, symbol)] == []


def test_the_public_names_of_ingest_are_where_they_were():
    from radloop.core import ingest, ingest_keys, ingest_summary, ingest_writer
    from radloop.core.ingest_lock import IngestLockedError

    assert {"IngestInterrupted", "IngestLockedError", "IngestSummary", "default_workers", "ingest_paths",
            "propagate_study_regions"} <= set(ingest.__all__)
    assert ingest.IngestSummary is ingest_summary.IngestSummary
    assert ingest.IngestInterrupted is ingest_summary.IngestInterrupted
    assert ingest.IngestLockedError is IngestLockedError
    assert {"CatalogWriter", "resolve_errors"} <= set(ingest_writer.__all__)
    assert ingest_writer.CataloguedKeys is ingest_keys.CataloguedKeys
