"""Walkthrough 24b: the ``weak_labels(report_id, rules_version)`` index (schema 5).

``label-reports catalog`` looks up, report by report, whether it has rows of the current rules version.  With only
the single-column indexes SQLite took the rules-version one (every row of a run under one key: a scan per report,
quadratic), which a ``rules_version || ''`` trick in the queries steered away from; migration 5 adds the composite
index, which the plain queries use (tests/test_walk23f_label_rerun.py measures the work per report).
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import inspect, select, text

from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.schema import Report, SchemaVersion, WeakLabel
from radloop.labeling.store import _labelled, stored_mentions

INDEX = "ix_weak_labels_report_version"


def _indexes(catalog) -> set[str]:
    return {index["name"] for index in inspect(catalog.engine).get_indexes("weak_labels")}


def test_schema_4_catalog_gains_the_weak_label_index_on_open_and_keeps_its_labels(workspace):
    old = Catalog.open(workspace)
    with old.session() as session:
        session.add(Report(id="R-1", content_hash="h", text="FINDINGS: effusion."))
        session.flush()
        session.add(WeakLabel(report_id="R-1", finding="effusion", status="positive", rules_version="v1"))
    with old.engine.begin() as connection:  # a catalog made by radloop at schema version 4
        connection.execute(text("DELETE FROM schema_version WHERE version > 4"))
        connection.execute(text(f"DROP INDEX {INDEX}"))
    assert old.schema_version() == 4 and INDEX not in _indexes(old)
    old.dispose()

    catalog = Catalog.open(workspace)  # migration 5 runs
    try:
        assert catalog.schema_version() == SCHEMA_VERSION == 5 and INDEX in _indexes(catalog)
        with catalog.session() as session:
            assert session.scalars(select(SchemaVersion.version).order_by(SchemaVersion.version)).all() == [
                1, 2, 3, 4, 5]
        assert [(report_id, [f["finding"] for f in findings])
                for report_id, findings in stored_mentions(catalog, "v1")] == [("R-1", ["effusion"])]
    finally:
        catalog.dispose()
    again = Catalog.open(workspace)  # up to date: nothing runs again
    try:
        assert again.schema_version() == 5 and INDEX in _indexes(again)
    finally:
        again.dispose()


@pytest.mark.skipif(os.environ.get("RADLOOP_TEST_DATABASE") == "postgres", reason="SQLite query plan")
def test_the_per_report_lookup_of_a_rules_version_uses_the_composite_index(catalog):
    """The plain ``rules_version = ?`` query (no ``|| ''``) goes through the composite index, not the
    rules-version one."""
    query = select(Report.id, _labelled("v1")).where(Report.id > "").order_by(Report.id).limit(500)
    with catalog.engine.connect() as connection:
        sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(row[-1] for row in connection.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert f"weak_labels USING COVERING INDEX {INDEX} (report_id=? AND rules_version=?)" in plan, plan
