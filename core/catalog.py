"""The catalog: one SQLAlchemy database (SQLite in the workspace by default, PostgreSQL by URL).

Usage::

    catalog = Catalog.open(resolve_workspace())
    with catalog.session() as session:
        session.add(...)

The schema is versioned: :data:`MIGRATIONS` lists ``(version, description, function)``; opening a catalog
applies the missing ones in order inside a transaction and records them in ``schema_version``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from radloop.core.schema import (
    Annotation, Base, DuplicateSource, Embedding, Image, IngestError, Model, Report, Round, SchemaVersion,
    Selection, Study, WeakLabel,
)
from radloop.core.workspace import Workspace


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


#: Ordered schema migrations.  Append, never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _migration_1_initial),
    (2, "pixel hash and SOP pseudonym of images, duplicate sources", _migration_2_pixel_duplicates),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (app, backend) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: Engine) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the version it was at before."""
    with engine.begin() as connection:
        SchemaVersion.__table__.create(connection, checkfirst=True)
        current = connection.execute(select(func.max(SchemaVersion.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"catalog schema version {current} is newer than this radloop ({SCHEMA_VERSION}); upgrade radloop")
        for version, description, function in MIGRATIONS:
            if version > current:
                function(connection)
                connection.execute(SchemaVersion.__table__.insert().values(version=version, description=description))
    return current


@dataclass
class Catalog:
    """Handle on the catalog database of one workspace."""

    workspace: Workspace
    engine: Engine
    _sessions: sessionmaker

    @classmethod
    def open(cls, workspace: Workspace, *, create: bool = True) -> "Catalog":
        """Open (and migrate) the catalog of ``workspace``.

        Raises:
            FileNotFoundError: ``create=False`` and the SQLite file (or, with a server database, the
                workspace folder) does not exist.
        """
        url = workspace.database_url
        if url.startswith("sqlite"):
            db_path = url.split("sqlite:///", 1)[-1]
            if not create and not __import__("os").path.exists(db_path):
                raise FileNotFoundError(
                    f"no catalog at {db_path}: run `radloop ingest ...` or `radloop demo` first")
            workspace.ensure()
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            if not create and not workspace.root.is_dir():  # the database exists, but not this workspace
                raise FileNotFoundError(
                    f"no workspace folder at {workspace.root} (its catalog would be RADLOOP_DATABASE_URL's "
                    "database): run `radloop ingest ...` first, or check --workspace")
            workspace.ensure()
            engine = create_engine(url, pool_pre_ping=True)
        migrate(engine)
        return cls(workspace=workspace, engine=engine, _sessions=sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def schema_version(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(SchemaVersion.version))).scalar() or 0

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for summaries and the app's overview)."""
        tables = {"studies": Study, "images": Image, "reports": Report, "weak_labels": WeakLabel,
                  "annotations": Annotation, "embeddings": Embedding, "models": Model, "rounds": Round,
                  "selections": Selection, "ingest_errors": IngestError, "duplicate_sources": DuplicateSource}
        with self.session() as session:
            return {name: session.scalar(select(func.count()).select_from(table)) or 0
                    for name, table in tables.items()}

    def current_model(self, task: str, kind: str | None = None) -> Model | None:
        """The registry's current model for ``task`` (and ``kind``), or None."""
        with self.session() as session:
            query = select(Model).where(Model.task == task, Model.is_current.is_(True))
            if kind:
                query = query.where(Model.kind == kind)
            return session.scalars(query.order_by(Model.created_at.desc())).first()

    def dispose(self) -> None:
        self.engine.dispose()

    def vacuum(self) -> None:
        if self.workspace.database_url.startswith("sqlite"):
            with self.engine.connect() as connection:
                connection.execute(text("VACUUM"))
