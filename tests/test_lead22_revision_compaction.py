"""PostgreSQL's ``catalog_revisions`` grew by one row per write transaction for ever (walk 22b's change marker,
read as a count on every page of the app): a read finding more than ``REVISIONS_KEPT`` compacts it to one row
when no writer is open, and the marker still changes exactly when the content does."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from radloop.core import catalog as catalog_module
from radloop.core.catalog import Catalog
from radloop.core.schema import CatalogRevision, Study
from radloop.core.workspace import resolve_workspace


@pytest.fixture
def pg_catalog(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RADLOOP_DATABASE_URL", postgres_url)
    monkeypatch.setattr(catalog_module, "REVISIONS_KEPT", 3)
    catalog = Catalog.open(resolve_workspace(tmp_path / "ws").ensure())
    yield catalog
    catalog.dispose()


def _write(catalog: Catalog, number: int) -> None:
    with catalog.session() as session:
        session.add(Study(id=f"S-{number}", dataset="t", split="train"))


def _rows(catalog: Catalog) -> int:
    with catalog.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(CatalogRevision)).scalar_one()


def test_revisions_are_compacted_and_the_marker_still_follows_the_content(pg_catalog):
    catalog = pg_catalog
    seen = [catalog.revision()]
    for number in range(5):
        _write(catalog, number)
        seen.append(catalog.revision())
    assert _rows(catalog) <= 4  # compacted on the read that found 4 rows (before: 6, one per write and none fewer)
    assert len(set(seen)) == len(seen), seen  # every write gave a new marker, the compactions too
    counts = catalog.cached("studies", lambda: 5)
    assert catalog.cached("studies", lambda: pytest.fail("recomputed without a change")) == counts
    _write(catalog, 99)
    assert catalog.cached("studies", lambda: 6) == 6  # a write after a compaction is still seen


def test_no_compaction_while_a_writer_is_open(pg_catalog):
    catalog = pg_catalog
    for number in range(5):
        _write(catalog, number)
    with catalog.session() as session:  # a write transaction holding its uncommitted revision row
        session.add(Study(id="S-open", dataset="t", split="train"))
        session.flush()
        rows = _rows(catalog)
        marker = catalog.revision()  # the compaction cannot take the table: nothing is deleted
        assert _rows(catalog) == rows and marker == catalog.revision()
    after = catalog.revision()  # the writer committed: its row counts, then the table is compacted
    assert after != marker and _rows(catalog) == 1
