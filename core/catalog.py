"""The catalog: one SQLAlchemy database (SQLite in the workspace by default, PostgreSQL by URL).

Usage::

    catalog = Catalog.open(resolve_workspace())
    with catalog.session() as session:
        session.add(...)

The schema is versioned: :data:`MIGRATIONS` lists ``(version, description, function)``; opening a catalog
applies the missing ones in order inside one transaction that holds the migration lock (several processes may
open an old catalog at once: one migrates, the others wait and find it done) and records them in
``schema_version``.

Every write transaction of a catalog opened here adds one row to ``catalog_revisions`` (an engine event, before
its first INSERT / UPDATE / DELETE): :meth:`Catalog.revision` is a cheap marker of the committed content, and
:meth:`Catalog.cached` reuses an aggregate (the app's overview) until it changes.

Read-check-write sequences that two processes may run at once (two pulls of one round) start their session
with :func:`get_for_update`, which holds a lock until the session's transaction ends.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from radloop.core.schema import (  # MIGRATIONS, SCHEMA_VERSION: also imported from here (their home was here)
    MIGRATIONS, SCHEMA_VERSION, Annotation, CatalogRevision, DuplicateSource, Embedding, Image, IngestError, Model,
    Report, Round, SchemaVersion, Selection, Study, WeakLabel,
)
from radloop.core.workspace import Workspace, catalog_write_failure, write_failure

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: values per ``IN (...)`` list: far below the bound-parameter limits of SQLite (32766 or 250000, by build) and
#: PostgreSQL (65535), large enough that a million ids take a few hundred queries
IN_CHUNK = 5000


def chunked(values: list, size: int = IN_CHUNK) -> Iterator[list]:
    """``values`` in consecutive slices of at most ``size`` (to look up ``IN`` lists of any length)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # readers (app, backend) never block the writer.  Switching a new database to WAL takes an exclusive lock
    # for which SQLite may answer "database is locked" at once rather than wait (two processes opening a new
    # catalog together failed so, once in a CI run): retried here for up to the busy timeout.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _read_only(db_path: str) -> bool:
    """Whether the SQLite file exists but cannot be written (no write permission on it or its folder, or a
    read-only mount): SQLite could not even open it there, as the WAL's ``-shm`` file cannot be made."""
    if not os.path.isfile(db_path):
        return False
    folder = os.path.dirname(os.path.abspath(db_path))
    if not (os.access(db_path, os.W_OK) and os.access(folder, os.W_OK)):
        return True
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def _open_read_only(db_path: str) -> Engine:
    """An engine reading ``db_path`` that turns any write into one ``OSError`` (EROFS) naming it.

    ``immutable=1``: SQLite neither locks nor needs the ``-shm`` file (``mode=ro`` alone fails on a WAL database
    where it cannot be made), but takes the file for unchanging: writes others make meanwhile (or left in a
    ``-wal`` file) are not seen until the catalog is opened again."""
    from urllib.parse import quote

    engine = create_engine(URL.create("sqlite", database=f"file:{quote(os.path.abspath(db_path))}",
                                      query={"mode": "ro", "immutable": "1", "uri": "true"}))

    def refuse_writes(context) -> None:  # SQLite: "attempt to write a readonly database"
        if "readonly database" in str(context.original_exception):
            raise OSError(errno.EROFS, "the workspace is read-only: this command needs to write", db_path)

    event.listen(engine, "handle_error", refuse_writes)
    return engine


def _storage_failure(error: BaseException, workspace: Workspace, db_path: str | None, what: str) -> OSError | None:
    """The one-line ``OSError`` for a catalog error caused by a full disk (``database or disk is full``; SQLite's
    ``disk I/O error`` where it cannot grow its ``-shm`` file), None for any other error."""
    failure = catalog_write_failure(error, workspace, what)
    if failure is None and db_path and "disk I/O error" in str(error):
        failure = write_failure(OSError("disk I/O error"), db_path, what)  # ENOSPC if the disk is full
        return failure if failure.errno in (errno.ENOSPC, errno.EDQUOT) else None
    return failure


#: PostgreSQL keeps one ``catalog_revisions`` row per write transaction; a read finding more compacts them
REVISIONS_KEPT = 10_000

#: ``connection.info`` key: this transaction has added its ``catalog_revisions`` row
_REVISION_LOGGED = "radloop_revision_logged"


def _log_revision(connection: Connection, _cursor, statement: str, *_args) -> None:
    """Before a transaction's first write, add its ``catalog_revisions`` row (in the same transaction, so that the
    marker changes exactly when the write commits).

    SQLite then deletes the older rows: its writers take turns, so the newest id alone marks the content and the
    table keeps one row.  PostgreSQL keeps them (one small row per write transaction): writers overlap there, so
    a transaction given an older id may commit after a newer one, and only the count tells; a read finding more
    than :data:`REVISIONS_KEPT` compacts them when no writer is open (:meth:`Catalog._compact_revisions`).
    """
    if connection.info.get(_REVISION_LOGGED) or not statement.lstrip()[:6].upper().startswith(
            ("INSERT", "UPDATE", "DELETE")):
        return
    connection.info[_REVISION_LOGGED] = True
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(f"INSERT INTO {CatalogRevision.__tablename__} DEFAULT VALUES")
        if connection.dialect.name == "sqlite":
            cursor.execute(f"DELETE FROM {CatalogRevision.__tablename__} WHERE id < last_insert_rowid()")
    finally:
        cursor.close()


def _new_transaction(connection: Connection, *_args) -> None:
    if connection.invalidated or connection.closed:
        # an interrupt mid-statement invalidates the connection and the rollback event still fires: reading its
        # ``info`` would try to reconnect inside the rollback (PendingRollbackError over the KeyboardInterrupt);
        # the DBAPI connection that replaces it starts with a fresh ``info``, so no flag is left set
        return
    connection.info[_REVISION_LOGGED] = False


def _watch_writes(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _log_revision)
    for name in ("begin", "commit", "rollback", "rollback_savepoint"):  # a rolled-back row must be added again
        event.listen(engine, name, _new_transaction)


#: Key of PostgreSQL's transaction-level advisory lock that serialises migrations (any constant bigint).
MIGRATION_LOCK_KEY = 0x7261646C6F6F70  # "radloop"


def _schema_version(connection: Connection) -> int:
    if not inspect(connection).has_table(SchemaVersion.__tablename__):
        return 0
    return connection.execute(select(func.max(SchemaVersion.version))).scalar() or 0


def _begin_write(connection: Connection) -> None:
    """Take the database's write lock now (SQLite), before the transaction's first read.

    pysqlite opens a transaction only at the first INSERT/UPDATE/DELETE, so reads before it run outside any
    transaction and another connection may write between them and the first write.  ``BEGIN IMMEDIATE``
    takes the write lock at once (waiting up to the busy timeout); a connection that already wrote holds it.
    """
    dbapi_connection = connection.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the version it was at before.

    A catalog already up to date is only read (no lock: opening never waits for a writer).  Otherwise the
    migrations run under a lock (SQLite's write lock, PostgreSQL's advisory lock :data:`MIGRATION_LOCK_KEY`)
    after the version is read again, so that processes opening an old catalog together apply each migration
    once; the first to get the lock migrates, the others find it done.
    """
    with engine.connect() as connection:
        current = _schema_version(connection)
    if current >= SCHEMA_VERSION:
        _check_not_newer(current, engine)
        return current
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            _begin_write(connection)
        elif connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        SchemaVersion.__table__.create(connection, checkfirst=True)
        current = _schema_version(connection)
        _check_not_newer(current, engine)
        for version, description, function in MIGRATIONS:
            if version > current:
                function(connection)
                connection.execute(SchemaVersion.__table__.insert().values(version=version, description=description))
    return current


#: Advisory lock key (PostgreSQL) that serialises opening a new round: the open-round check and its number.
ROUND_LOCK_KEY = MIGRATION_LOCK_KEY + 1


def lock_for_write(session: Session, key: int) -> None:
    """Serialise a read-check-write that no single row covers (e.g. "no round is open? then number the next
    one"); call it first in the session.  PostgreSQL takes the transaction-level advisory lock ``key``;
    SQLite the database's write lock (``BEGIN IMMEDIATE``).  A second session asking for the same lock waits
    until the first commits or rolls back, then reads what it wrote."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        _begin_write(connection)
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class CatalogVersionError(OSError):
    """The catalog was written by a newer radloop (schema version above :data:`SCHEMA_VERSION`): it is left
    untouched.  An OSError naming the database (like a file of an unknown format), so that the CLI prints it as
    one line and exits 2 instead of a traceback."""

    def __str__(self) -> str:
        return f"{self.strerror}: {self.filename}"


def _check_not_newer(current: int, engine: Engine) -> None:
    if current > SCHEMA_VERSION:
        url = engine.url
        where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
        raise CatalogVersionError(0, f"catalog schema version {current} is newer than this radloop knows "
                                     f"({SCHEMA_VERSION}): upgrade radloop to open it", where)


def get_for_update(session: Session, entity: type[T], ident) -> T | None:
    """``session.get(entity, ident)``, locked until the session's transaction ends; call it first in the session.

    PostgreSQL locks the row (``SELECT ... FOR UPDATE``); SQLite has no row locks, so the session takes the
    database's write lock (``BEGIN IMMEDIATE``) before it reads.  Either way a second session locking the
    same row waits until the first commits or rolls back, then reads what the first wrote: read-check-write
    sequences (what is stored? insert the rest) keyed on that row no longer interleave.  Reads the session
    made before the call are not covered (on SQLite they ran outside the transaction).
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        _begin_write(connection)
        return session.get(entity, ident, populate_existing=True)
    return session.get(entity, ident, with_for_update=True, populate_existing=True)


@dataclass
class Catalog:
    """Handle on the catalog database of one workspace."""

    workspace: Workspace
    engine: Engine
    _sessions: sessionmaker
    #: name -> (revision, value) of :meth:`cached`
    _cache: dict[str, tuple[tuple[int, int], Any]] = field(default_factory=dict, repr=False, compare=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def open(cls, workspace: Workspace, *, create: bool = True) -> "Catalog":
        """Open (and migrate) the catalog of ``workspace``; a migration is logged once (WARNING), by the process
        that ran it.  A SQLite catalog that cannot be written is opened read-only (:func:`_open_read_only`).

        Raises:
            FileNotFoundError: ``create=False`` and the SQLite file (or, with a server database, the
                workspace folder) does not exist.
            CatalogVersionError: the catalog is of a newer radloop.
            OSError: the disk is full (ENOSPC, naming the catalog).
        """
        url = workspace.database_url
        db_path = None
        if url.startswith("sqlite"):
            db_path = url.split("sqlite:///", 1)[-1]
            if not create and not os.path.exists(db_path):
                raise FileNotFoundError(
                    f"no catalog at {db_path}: run `radloop ingest ...` or `radloop demo` first")
            if _read_only(db_path):  # e.g. a shared workspace, read-only rights: reads work, writes are refused
                engine = _open_read_only(db_path)
            else:
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
        try:
            before = migrate(engine)
        except OperationalError as error:
            failure = _storage_failure(error, workspace, db_path, "the catalog (opening it)")
            if failure:
                raise failure from None
            raise
        if 0 < before < SCHEMA_VERSION:  # this process upgraded it (once: a concurrent opener finds it done)
            logger.warning("catalog %s upgraded from schema version %d to %d (%s); an older radloop can no "
                           "longer open it", workspace.root, before, SCHEMA_VERSION,
                           "; ".join(description for version, description, _ in MIGRATIONS if version > before))
        _watch_writes(engine)
        return cls(workspace=workspace, engine=engine, _sessions=sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error; a commit refused for a full disk raises an
        ``OSError`` (ENOSPC) naming the catalog, a write to a read-only catalog one (EROFS)."""
        session = self._sessions()
        try:
            yield session
            try:
                session.commit()
            except OperationalError as error:  # a full disk: one line naming the catalog, not a traceback
                failure = _storage_failure(error, self.workspace, None, "the changes to the catalog (none was kept)")
                if failure:
                    raise failure from None
                raise
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

    def revision(self) -> tuple[int, int]:
        """A marker of the committed content: the ``catalog_revisions`` rows and the newest one's id.

        Any commit through a catalog opened by :meth:`open` (any process) changes it; read it before what it
        guards, so that a value computed afterwards is at least as new as the marker it is stored under.
        """
        with self.engine.connect() as connection:
            count, newest = connection.execute(select(func.count(), func.max(CatalogRevision.id))).one()
        if count > REVISIONS_KEPT and self.engine.dialect.name == "postgresql" and self._compact_revisions():
            return self.revision()
        return count, newest or 0

    def _compact_revisions(self) -> bool:
        """PostgreSQL: keep only the newest ``catalog_revisions`` row (the table grows by one row per write
        transaction); True when done.

        Only while no write transaction is open (``LOCK … NOWAIT`` fails while one holds an uncommitted row, and
        then nothing is done): afterwards every new row gets a larger id, so the pair (rows, newest id) never
        returns to a value read before: the count restarts at 1 under a newer id than any seen, then grows.
        """
        from sqlalchemy.exc import OperationalError

        try:
            with self.engine.begin() as connection:
                connection.execute(text(f"LOCK TABLE {CatalogRevision.__tablename__} IN EXCLUSIVE MODE NOWAIT"))
                # the DELETE is a write: its own revision row (the newest) is added first and kept
                connection.execute(text(f"DELETE FROM {CatalogRevision.__tablename__} WHERE id < "
                                        f"(SELECT max(id) FROM {CatalogRevision.__tablename__})"))
        except OperationalError:  # a writer holds the table (lock not available): compact on a later read
            return False
        return True

    def cached(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, reused until the catalog changes (:meth:`revision`); callers must not modify it."""
        revision = self.revision()
        with self._cache_lock:
            stored = self._cache.get(name)
        if stored is not None and stored[0] == revision:
            return stored[1]
        value = compute()
        with self._cache_lock:
            self._cache[name] = (revision, value)
        return value

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for summaries and the app's overview); reused until the catalog changes."""
        return dict(self.cached("counts", self._count_rows))

    def _count_rows(self) -> dict[str, int]:
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
