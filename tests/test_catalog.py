from sqlalchemy import select

from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.schema import Image, Study


def test_catalog_creates_all_tables(catalog):
    tables = set(catalog.table_names())
    for name in ("studies", "images", "reports", "weak_labels", "annotations", "embeddings", "models",
                 "rounds", "selections", "ingest_errors", "schema_version"):
        assert name in tables
    assert catalog.schema_version() == SCHEMA_VERSION


def test_reopen_is_idempotent(workspace):
    first = Catalog.open(workspace)
    with first.session() as session:
        session.add(Study(id="S-1", dataset="t"))
    first.dispose()
    second = Catalog.open(workspace)
    assert second.schema_version() == SCHEMA_VERSION
    with second.session() as session:
        assert session.scalar(select(Study.id)) == "S-1"
        assert session.scalars(select(Image)).all() == []
