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


def pytest_collection_modifyitems(items):
    """Mark every test that uses a workspace catalog (the ``workspace`` fixture, or ``test_catalog_url`` for
    module-scoped workspaces): ``-m catalog`` selects them for the PostgreSQL pass."""
    for item in items:
        if {"workspace", "test_catalog_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.catalog)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A throwaway PostgreSQL server for the session (pgserver's bundled binaries; no root, no system install)."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed (pip install -e '.[test]')")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server
    server.cleanup()


def _new_postgres_database(server) -> tuple[str, str]:
    """(name, SQLAlchemy URL) of a new, empty database on ``server``."""
    import uuid
    from urllib.parse import urlsplit

    name = f"radloop_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name};")
    parts = urlsplit(server.get_uri())  # postgresql://postgres:@/postgres?host=/socket/dir
    return name, f"postgresql+psycopg://{parts.netloc}/{name}?{parts.query}"


@pytest.fixture
def postgres_url(postgres_server):
    """SQLAlchemy URL of a new, empty PostgreSQL database on the session's server (dropped afterwards)."""
    name, url = _new_postgres_database(postgres_server)
    yield url
    postgres_server.psql(f"DROP DATABASE {name} WITH (FORCE);")


@pytest.fixture(scope="session")
def test_catalog_url(request):
    """``test_catalog_url(root)``: the catalog URL of a test workspace built outside the ``workspace`` fixture
    (module-scoped ones): its own SQLite file, or a new PostgreSQL database under ``RADLOOP_TEST_DATABASE=postgres``.
    Tests that use it (directly or through another fixture) are marked ``catalog`` automatically."""
    from radloop.core.workspace import sqlite_url

    def url(root) -> str:
        if os.environ.get("RADLOOP_TEST_DATABASE") == "postgres":
            return _new_postgres_database(request.getfixturevalue("postgres_server"))[1]
        return sqlite_url(root)

    return url


@pytest.fixture
def workspace(tmp_path, monkeypatch, request):
    """A fresh, empty workspace for one test: SQLite, or a new PostgreSQL database when the environment sets
    ``RADLOOP_TEST_DATABASE=postgres`` (``make test-postgres``)."""
    from radloop.core.workspace import resolve_workspace

    if os.environ.get("RADLOOP_TEST_DATABASE") == "postgres":
        monkeypatch.setenv("RADLOOP_DATABASE_URL", request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    return resolve_workspace(tmp_path / "ws").ensure()


@pytest.fixture
def catalog(workspace):
    from radloop.core.catalog import Catalog

    opened = Catalog.open(workspace)
    yield opened
    opened.dispose()


@pytest.fixture
def env(monkeypatch):
    """The app tests' environment, isolated from the caller's: no database URL (but the test catalog's PostgreSQL
    one under ``RADLOOP_TEST_DATABASE=postgres``), a Label Studio that is down.  Returns ``monkeypatch``."""
    if os.environ.get("RADLOOP_TEST_DATABASE") != "postgres":
        monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # discard port: refused at once
    return monkeypatch


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: on a shared, oversubscribed CPU, OpenMP workers spin and run ~10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def sigint_restored():
    """Lightning ignores SIGINT after a Ctrl-C (a second one must not cut its shutdown short): put it back."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _cli_progress_setting_restored():
    """`radloop.app.cli.main()` run in-process (a test's CliRunner does not call it, some tests do) turns on the
    once-a-minute progress lines for the whole process when stderr is no terminal: each test gets the setting back."""
    from radloop.ssl import trainer_progress

    saved = trainer_progress.LOG_LINES_WITHOUT_BAR
    yield
    trainer_progress.LOG_LINES_WITHOUT_BAR = saved


@pytest.fixture(autouse=True)
def _sigint_handler_restored():
    """Every test starts with Python's own SIGINT handler: Lightning leaves SIGINT ignored after a Ctrl-C it
    handled (see ``sigint_restored``), and an ignored SIGINT is inherited by every process a later test starts, so
    one test's leak made the interrupt tests after it fail (their runs ended before a signal could land)."""
    import signal

    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
