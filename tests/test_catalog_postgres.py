"""The catalog on a real PostgreSQL server (pgserver's throwaway PostgreSQL 16), in every test run.

`make test` also runs every test that uses a workspace catalog a second time on PostgreSQL
(``RADLOOP_TEST_DATABASE=postgres``, ``-m catalog``); this module checks that the switch really happens.
"""

from __future__ import annotations

import os

from sqlalchemy import select

from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.schema import Image, Study
from radloop.core.workspace import resolve_workspace


def test_catalog_on_postgresql_migrates_once_and_round_trips_json(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RADLOOP_DATABASE_URL", postgres_url)
    workspace = resolve_workspace(tmp_path / "ws").ensure()
    first = Catalog.open(workspace)
    assert first.engine.dialect.name == "postgresql"
    assert not (workspace.root / "catalog.sqlite").exists()  # nothing written to the workspace's SQLite path
    with first.session() as session:
        session.add(Study(id="S-1", dataset="t", split="train", body_region="wrist", meta={"views": ["PA", "LAT"]}))
        session.flush()
        session.add(Image(id="I-1", study_id="S-1", content_hash="h1", source_path="x", source_format="png",
                          render_path="r.png", thumb_path="t.png", width=10, height=10, render_width=10,
                          render_height=10))
    first.dispose()
    second = Catalog.open(workspace)  # the migration does not run twice
    assert second.schema_version() == SCHEMA_VERSION
    with second.session() as session:
        study = session.scalar(select(Study).where(Study.split == "train"))
        assert study.meta == {"views": ["PA", "LAT"]} and study.body_region == "wrist"
    assert second.counts()["images"] == 1
    second.dispose()


def test_workspace_fixture_follows_the_test_database_switch(catalog):
    expected = "postgresql" if os.environ.get("RADLOOP_TEST_DATABASE") == "postgres" else "sqlite"
    assert catalog.engine.dialect.name == expected
