"""Catalog tables (SQLAlchemy 2.0 declarative).

Study ids are pseudonymous (``S-<16 hex>``, an HMAC with the workspace key) and image ids come from the file's
content hash (``I-<16 hex>``); no DICOM header identifier (name, patient id, birth date, accession, institution,
UIDs) enters these tables.  What the site supplies is kept as given, so the catalog must be protected like the
archive: reports keep their source id (Open-i ``CXR123``, or a CSV's ``report_id``, often an accession number)
and their text; images keep their source path and file stem (``external_id``).  Free-form extras go into the
JSON ``meta`` columns so that a part can add attributes without a migration; a new column or table takes one
(:data:`MIGRATIONS`, at the end: append, never edit a released one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone

from sqlalchemy import (
    JSON, Boolean, Connection, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
    inspect, select, text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    description: Mapped[str] = mapped_column(String(200), default="")


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100), default="", index=True)
    body_region: Mapped[str | None] = mapped_column(String(50), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(8), default="train", index=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    dataset: Mapped[str] = mapped_column(String(100), default="", index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)  # e.g. Open-i image stem
    source_path: Mapped[str] = mapped_column(Text)  # original location, kept for re-processing
    source_format: Mapped[str] = mapped_column(String(16))  # dicom | png | jpeg
    render_path: Mapped[str] = mapped_column(Text)  # 8-bit PNG, relative to the workspace
    thumb_path: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)  # original pixel columns
    height: Mapped[int] = mapped_column(Integer)  # original pixel rows
    render_width: Mapped[int] = mapped_column(Integer)
    render_height: Mapped[int] = mapped_column(Integer)
    body_region: Mapped[str | None] = mapped_column(String(50), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    view: Mapped[str | None] = mapped_column(String(32))
    laterality: Mapped[str | None] = mapped_column(String(8))
    pixel_spacing_row: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_col: Mapped[float | None] = mapped_column(Float)
    pixel_spacing_source: Mapped[str | None] = mapped_column(String(32))
    bits_stored: Mapped[int | None] = mapped_column(Integer)
    photometric: Mapped[str | None] = mapped_column(String(16))
    # Duplicate keys (schema version 2; NULL for rows ingested before until a re-ingest backfills them):
    # core.deid.pixel_hash of the decoded stored pixels, and the HMAC pseudonym of a DICOM SOPInstanceUID.
    pixel_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    sop_pseudonym: Mapped[str | None] = mapped_column(String(40), index=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    # indexed (schema version 3, with body_region first in ix_images_region_created): the app's case picker
    # lists the newest images, of one region or all
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class DuplicateSource(Base):
    """A file whose decoded pixels are those of an image already catalogued (re-saved, re-encoded losslessly,
    exported under new UIDs): it is not a second image; its path is kept here and its content hash makes a
    re-ingest skip it like a catalogued file."""

    __tablename__ = "duplicate_sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the duplicate file's bytes
    source_path: Mapped[str] = mapped_column(Text)
    source_format: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(100), default="")
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(100), default="")
    text: Mapped[str] = mapped_column(Text)
    sections: Mapped[dict] = mapped_column(JSON, default=dict)  # {"FINDINGS": "...", ...}
    expert_codes: Mapped[list] = mapped_column(JSON, default=list)  # e.g. Open-i manual MeSH terms
    image_external_ids: Mapped[list] = mapped_column(JSON, default=list)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the report's date as its source gives it (schema version 4; NULL when the source has none or an unreadable
    # one): orders a study's reports
    report_date: Mapped[date | None] = mapped_column(Date)


class ReportImageName(Base):
    """One image external id a report names (``Report.image_external_ids``), indexed (schema version 3): an ingest
    of images finds the reports waiting for them by the new images' names instead of re-reading every report."""

    __tablename__ = "report_image_names"
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class CatalogRevision(Base):
    """A row per write transaction (schema version 3; SQLite keeps only the newest): a cheap marker of the
    catalog's content (:meth:`radloop.core.catalog.Catalog.revision`), so that aggregates are recomputed only
    when it changed."""

    __tablename__ = "catalog_revisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)


class WeakLabel(Base):
    """One finding mention extracted from a report by the rules."""

    __tablename__ = "weak_labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    finding: Mapped[str] = mapped_column(String(50), index=True)
    status: Mapped[str] = mapped_column(String(16))  # positive | negative | uncertain
    temporality: Mapped[str] = mapped_column(String(16), default="unspecified")
    site: Mapped[str | None] = mapped_column(String(50))
    laterality: Mapped[str | None] = mapped_column(String(16))
    device_type: Mapped[str | None] = mapped_column(String(50))
    evidence: Mapped[str] = mapped_column(Text, default="")
    start: Mapped[int | None] = mapped_column(Integer)
    end: Mapped[int | None] = mapped_column(Integer)
    section: Mapped[str | None] = mapped_column(String(50))
    rules_version: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(Base):
    """An expert label: an image-level choice or a box in original-image pixels.  Append-only."""

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    source: Mapped[str] = mapped_column(String(200))  # coco:<file> | yolo:<dir> | labelstudio | simulate
    kind: Mapped[str] = mapped_column(String(16))  # choice | box | skip
    label: Mapped[str] = mapped_column(String(100), index=True)  # finding vocabulary name
    source_label: Mapped[str | None] = mapped_column(String(200))  # the source's own class name
    x: Mapped[float | None] = mapped_column(Float)
    y: Mapped[float | None] = mapped_column(Float)
    w: Mapped[float | None] = mapped_column(Float)
    h: Mapped[float | None] = mapped_column(Float)
    annotator: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(100), index=True)  # e.g. LS annotation id
    version: Mapped[int] = mapped_column(Integer, default=1)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QuarantinedAnnotation(Base):
    """An annotation result that could not be converted (unknown label, malformed); kept with a reason."""

    __tablename__ = "quarantined_annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str | None] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Embedding(Base):
    """Where an image's embedding by one model version lives (row ``row`` of a shard file)."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_id", "model_version", name="uq_embedding_image_model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(100), index=True)
    shard_path: Mapped[str] = mapped_column(Text)  # relative to the workspace
    row: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    normalized: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """Model registry: encoders, classifiers, detectors, with lineage, data used and metrics."""

    __tablename__ = "models"
    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # encoder | probe | classifier | detector
    task: Mapped[str] = mapped_column(String(64), default="", index=True)
    parent_version: Mapped[str | None] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(Text)  # relative to the workspace (or absolute outside it)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    annotation_ids: Mapped[list] = mapped_column(JSON, default=list)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Round(Base):
    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[str] = mapped_column(String(32), default="created")
    strategy: Mapped[str] = mapped_column(String(50))
    budget: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(64), default="")
    model_version: Mapped[str | None] = mapped_column(String(100))
    metric_name: Mapped[str | None] = mapped_column(String(50))
    metric_before: Mapped[float | None] = mapped_column(Float)
    metric_after: Mapped[float | None] = mapped_column(Float)
    labels_spent: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Selection(Base):
    __tablename__ = "selections"
    __table_args__ = (UniqueConstraint("round_id", "image_id", name="uq_selection_round_image"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)  # 1 = the strategy's first pick
    score: Mapped[float | None] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(Text, default="")
    ls_task_id: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IngestError(Base):
    __tablename__ = "ingest_errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    path: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(32))  # read | decode | render | parse | link | duplicate
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


Index("ix_annotations_image_label", Annotation.image_id, Annotation.label)
Index("ix_images_region_created", Image.body_region, Image.created_at)
Index("ix_weak_labels_report_version", WeakLabel.report_id, WeakLabel.rules_version)


# Migrations: applied in order by radloop.core.catalog.migrate, each recorded in ``schema_version``.

#: report rows read per query by a migration that backfills from them
MIGRATION_PAGE = 5000


def _migration_1_initial(connection: Connection) -> None:
    Base.metadata.create_all(connection)


def _migration_2_pixel_duplicates(connection: Connection) -> None:
    """``images.pixel_hash`` and ``images.sop_pseudonym`` (nullable, indexed) and the ``duplicate_sources`` table.

    A new catalog already has them (migration 1 creates the current tables), so each step checks first.
    Rows ingested before keep NULL keys until a re-ingest of their file backfills them (core.ingest).
    """
    inspector = inspect(connection)
    columns = {column["name"] for column in inspector.get_columns(Image.__tablename__)}
    indexes = {index["name"] for index in inspector.get_indexes(Image.__tablename__)}
    for name in ("pixel_hash", "sop_pseudonym"):
        column = Image.__table__.c[name]
        if name not in columns:
            connection.execute(text(f"ALTER TABLE {Image.__tablename__} ADD COLUMN {name} "
                                    f"{column.type.compile(dialect=connection.dialect)}"))
        for index in Image.__table__.indexes:
            if list(index.columns) == [column] and index.name not in indexes:
                index.create(connection)
    DuplicateSource.__table__.create(connection, checkfirst=True)


def _migration_3_scale_indexes(connection: Connection) -> None:
    """Indexes on ``images.created_at`` (the app's case picker), the ``catalog_revisions`` change log and the
    ``report_image_names`` index of the image names reports give, filled from the reports already catalogued."""
    indexes = {index["name"] for index in inspect(connection).get_indexes(Image.__tablename__)}
    for index in Image.__table__.indexes:
        if Image.__table__.c.created_at in list(index.columns) and index.name not in indexes:
            index.create(connection)
    CatalogRevision.__table__.create(connection, checkfirst=True)
    if inspect(connection).has_table(ReportImageName.__tablename__):  # a new catalog: made by migration 1
        return
    ReportImageName.__table__.create(connection)
    last = ""
    while True:  # by pages of report ids: a million reports are never all in memory
        rows = connection.execute(select(Report.id, Report.image_external_ids).where(Report.id > last)
                                  .order_by(Report.id).limit(MIGRATION_PAGE)).all()
        if not rows:
            return
        names = [{"report_id": report_id, "external_id": name} for report_id, external_ids in rows
                 for name in dict.fromkeys(external_ids or ())]
        if names:
            connection.execute(ReportImageName.__table__.insert(), names)
        last = rows[-1][0]


def _migration_4_report_date(connection: Connection) -> None:
    """``reports.report_date`` (nullable): NULL for the reports catalogued before, until a re-ingest of a source
    that gives dates fills it (a new catalog already has it: migration 1 creates the current tables)."""
    if "report_date" not in {column["name"] for column in inspect(connection).get_columns(Report.__tablename__)}:
        column = Report.__table__.c.report_date
        connection.execute(text(f"ALTER TABLE {Report.__tablename__} ADD COLUMN report_date "
                                f"{column.type.compile(dialect=connection.dialect)}"))


def _migration_5_weak_label_lookup(connection: Connection) -> None:
    """Index ``weak_labels(report_id, rules_version)``: a report's rows of one rules version, found directly (the
    rules-version index alone holds every row of a run under one key; the report-id one, every version's rows)."""
    indexes = {index["name"] for index in inspect(connection).get_indexes(WeakLabel.__tablename__)}
    for index in WeakLabel.__table__.indexes:
        if index.name == "ix_weak_labels_report_version" and index.name not in indexes:
            index.create(connection)


#: Ordered schema migrations.  Append, never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _migration_1_initial),
    (2, "pixel hash and SOP pseudonym of images, duplicate sources", _migration_2_pixel_duplicates),
    (3, "created_at indexes of images, catalog revisions, report image names", _migration_3_scale_indexes),
    (4, "report dates", _migration_4_report_date),
    (5, "weak labels index by report and rules version", _migration_5_weak_label_lookup),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
