"""Shared fixtures: real data from ../shared/data (skip with the reason when absent), fresh workspaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("RADLOOP_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def data_path(*parts: str) -> Path:
    """Path under the shared real-data folder; skips the test with the reason when it is missing."""
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (tests read ../shared/data, never a copy in the repo)")
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty workspace (SQLite catalog) for one test."""
    from radloop.core.workspace import resolve_workspace

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    return resolve_workspace(tmp_path / "ws").ensure()


@pytest.fixture
def catalog(workspace):
    from radloop.core.catalog import Catalog

    opened = Catalog.open(workspace)
    yield opened
    opened.dispose()


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: on a shared, oversubscribed CPU, OpenMP workers spin and run ~10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
