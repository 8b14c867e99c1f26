"""Catalog scale: the case picker's created_at index (schema 3, added to an older catalog on open) and the
overview's aggregates reused until the catalog changes (the catalog revision marker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, inspect, select, text

from radloop.app import views
from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.schema import Image, Report, ReportImageName, SchemaVersion, Study, WeakLabel

CREATED_AT_INDEXES = {"ix_images_created_at", "ix_images_region_created"}


def _image(image_id: str, study_id: str, region: str | None, created: datetime, name: str | None = None) -> Image:
    return Image(id=image_id, study_id=study_id, content_hash=image_id * 2, dataset="t", external_id=name or image_id,
                 source_path=f"/x/{image_id}.png", source_format="png", render_path="r.png", thumb_path="t.png",
                 width=10, height=10, render_width=10, render_height=10, body_region=region, created_at=created)


def _downgrade_to_schema_2(catalog: Catalog) -> None:
    """Turn a catalog into one made by radloop at schema version 2: no created_at indexes, no revision log, no
    report image names."""
    with catalog.engine.begin() as connection:
        connection.execute(text("DELETE FROM schema_version WHERE version > 2"))  # logged while the log exists
        for name in sorted(CREATED_AT_INDEXES):
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        connection.execute(text("DROP TABLE report_image_names"))
        connection.execute(text("DROP TABLE catalog_revisions"))


def _statements(catalog: Catalog, run) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(catalog.engine, "before_cursor_execute", record)
    return seen


def test_schema_2_catalog_gains_the_created_at_indexes_on_open_and_keeps_its_data(workspace):
    old = Catalog.open(workspace)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with old.session() as session:
        session.add(Study(id="S-1", dataset="t"))
        session.flush()
        session.add_all([_image(f"I-{n}", "S-1", "chest" if n % 2 else "knee", base + timedelta(minutes=n))
                         for n in range(6)])
        session.flush()
        session.add(Report(id="R-1", study_id=None, content_hash="h", text="t", image_external_ids=["I-9", "I-8"]))
    _downgrade_to_schema_2(old)
    assert old.schema_version() == 2
    assert not CREATED_AT_INDEXES & {index["name"] for index in inspect(old.engine).get_indexes("images")}
    old.dispose()

    catalog = Catalog.open(workspace)  # migration 3 runs
    try:
        assert catalog.schema_version() == SCHEMA_VERSION  # migrations 3 and 4 run
        assert CREATED_AT_INDEXES <= {index["name"] for index in inspect(catalog.engine).get_indexes("images")}
        assert catalog.counts()["images"] == 6
        with catalog.session() as session:  # the report's image names are indexed from the report itself
            assert sorted(session.execute(select(ReportImageName.report_id, ReportImageName.external_id))) == [
                ("R-1", "I-8"), ("R-1", "I-9")]
            assert session.scalars(select(SchemaVersion.version).order_by(SchemaVersion.version)).all() == [
                *range(1, SCHEMA_VERSION + 1)]
        assert views.list_cases(catalog)["image_id"].tolist() == [f"I-{n}" for n in range(5, -1, -1)]
        assert views.list_cases(catalog, body_region="knee")["image_id"].tolist() == ["I-4", "I-2", "I-0"]
    finally:
        catalog.dispose()
    again = Catalog.open(workspace)  # migration 3 does not run twice
    assert again.schema_version() == SCHEMA_VERSION and again.counts()["images"] == 6
    again.dispose()


def test_case_picker_reads_images_newest_first_through_an_index_not_a_sort_of_all(catalog):
    sqlite = catalog.engine.dialect.name == "sqlite"
    for region, index in ((None, "ix_images_created_at"), ("chest", "ix_images_region_created")):
        statement, parameters = next((statement, parameters) for statement, parameters in _statements(
            catalog, lambda region=region: views.list_cases(catalog, body_region=region)) if "ORDER BY" in statement)
        with catalog.engine.connect() as connection:
            if sqlite:
                plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
                assert any(f"USING INDEX {index}" in step for step in plan), plan
                assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # a sort of every (region's) image
            else:  # an empty table: tell the planner that scans and sorts are dear, as they are on an archive
                connection.exec_driver_sql("SET enable_seqscan = off")
                connection.exec_driver_sql("SET enable_sort = off")
                plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
                assert f"using {index}" in plan, plan


def _fill(catalog: Catalog) -> None:
    with catalog.session() as session:
        session.add(Study(id="S-1", dataset="t"))
        session.flush()
        session.add(_image("I-1", "S-1", "chest", datetime(2024, 1, 1, tzinfo=UTC)))
        session.add(Report(id="R-1", study_id="S-1", content_hash="h", text="effusion"))
        session.flush()
        session.add(WeakLabel(report_id="R-1", finding="effusion", status="positive", rules_version="v1"))


def _overview(catalog: Catalog) -> tuple:
    return (catalog.counts(), views.region_counts(catalog).to_dict("records"),
            views.finding_counts(catalog).to_dict("records"), views.weak_label_coverage(catalog))


def test_overview_reload_without_change_reads_no_weak_label_and_any_write_recomputes(catalog, workspace):
    _fill(catalog)
    first = _overview(catalog)
    assert first[2][0]["finding"] == "effusion" and first[2][0]["positive"] == 1
    # a reload: only the revision marker is read, no table is scanned again
    statements = [statement for statement, _ in _statements(catalog, lambda: _overview(catalog))]
    assert statements and all("catalog_revisions" in statement for statement in statements), statements
    assert _overview(catalog) == first

    with catalog.session() as session:  # a new weak label: the findings and the coverage change
        session.add(WeakLabel(report_id="R-1", finding="fracture", status="negative", rules_version="v1"))
    second = _overview(catalog)
    assert {row["finding"]: row["negative"] for row in second[2]} == {"effusion": 0, "fracture": 1}
    assert second[0]["weak_labels"] == 2

    other = Catalog.open(workspace)  # another process (the CLI) moves the image: this handle sees it
    try:
        with other.session() as session:
            session.get(Image, "I-1").body_region = "knee"
    finally:
        other.dispose()
    assert views.region_counts(catalog)["body_region"].tolist() == ["knee"]

    with pytest.raises(RuntimeError), catalog.session() as session:  # rolled back: nothing to recompute
        session.add(WeakLabel(report_id="R-1", finding="nodule", status="positive", rules_version="v1"))
        session.flush()
        raise RuntimeError("abort")
    assert "nodule" not in views.finding_counts(catalog)["finding"].tolist()
    if catalog.engine.dialect.name == "sqlite":  # its writers take turns: the newest revision row is enough
        with catalog.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM catalog_revisions")).scalar() == 1
