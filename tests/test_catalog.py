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


def test_targets_newest_choice_wins_and_uncertain_is_unknown(catalog):
    from radloop.core.schema import Annotation, Image
    from radloop.core.targets import image_targets

    with catalog.session() as session:
        session.add(Study(id="S-2", dataset="t", split="train"))
        session.flush()
        session.add(Image(id="I-1", study_id="S-2", content_hash="h1", source_path="x", source_format="png",
                          render_path="r.png", thumb_path="t.png", width=10, height=10, render_width=10,
                          render_height=10))
        session.add(Image(id="I-2", study_id="S-2", content_hash="h2", source_path="y", source_format="png",
                          render_path="r2.png", thumb_path="t2.png", width=10, height=10, render_width=10,
                          render_height=10))
    with catalog.session() as session:
        session.add(Annotation(image_id="I-1", source="labelstudio", kind="choice", label="fracture", meta={"value": 1}))
        session.add(Annotation(image_id="I-2", source="labelstudio", kind="choice", label="fracture", meta={"value": 1}))
    with catalog.session() as session:
        session.add(Annotation(image_id="I-1", source="labelstudio", kind="choice", label="fracture", meta={"value": 0}))
        session.add(Annotation(image_id="I-2", source="labelstudio", kind="choice", label="fracture",
                               meta={"value": None, "status": "uncertain"}))
    targets = {t.image_id: t for t in image_targets(catalog)}
    assert targets["I-1"].labels == {"fracture": 0}
    assert targets["I-2"].labels == {}


def test_workspace_accepts_a_string_root(tmp_path):
    from radloop.core.workspace import Workspace, sqlite_url

    workspace = Workspace(str(tmp_path / "ws"), sqlite_url(tmp_path / "ws"))  # as typed in a notebook
    assert workspace.root == (tmp_path / "ws").resolve() and workspace.renders_dir == workspace.root / "renders"
