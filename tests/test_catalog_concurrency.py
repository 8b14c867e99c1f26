"""Two processes on one catalog at once: opening (migrating) an old catalog together, and the row lock that
read-check-write sequences (two pulls of a round) take.  Threads with their own engines stand in for the
processes; SQLite and PostgreSQL (``RADLOOP_TEST_DATABASE=postgres``) alike."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from radloop.core import catalog as catalog_module
from radloop.core.catalog import SCHEMA_VERSION, Catalog, get_for_update
from radloop.core.schema import Round, SchemaVersion


def _in_threads(*targets) -> list[BaseException]:
    """Run ``targets`` in threads at once; returns the errors they raised."""
    errors: list[BaseException] = []

    def guarded(target):
        try:
            target()
        except BaseException as error:  # the test reports it; a thread would swallow it
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a thread hangs (lock never released?)"
    return errors


def test_two_processes_opening_a_schema_1_catalog_at_once_both_succeed_and_migrate_once(workspace, monkeypatch):
    from test_ingest_dedupe import _downgrade_to_schema_1

    old = Catalog.open(workspace)
    _downgrade_to_schema_1(old)
    assert old.schema_version() == 1
    old.dispose()

    migrating, runs = threading.Event(), []
    version, description, migration_2 = catalog_module.MIGRATIONS[1]

    def slow_migration_2(connection):
        migration_2(connection)
        runs.append(threading.current_thread().name)
        migrating.set()
        time.sleep(1.0)  # the other opener reads the version meanwhile (before the fix: 1, so it migrated too)

    monkeypatch.setattr(catalog_module, "MIGRATIONS",
                        [catalog_module.MIGRATIONS[0], (version, description, slow_migration_2),
                         *catalog_module.MIGRATIONS[2:]])
    opened: list[Catalog] = []

    def first():
        opened.append(Catalog.open(workspace))

    def second():
        assert migrating.wait(timeout=60)
        opened.append(Catalog.open(workspace))

    errors = _in_threads(first, second)
    try:
        assert not errors, errors
        assert len(runs) == 1 and len(opened) == 2
        with opened[0].session() as session:
            assert session.scalars(select(SchemaVersion.version).order_by(SchemaVersion.version)).all() == [
                *range(1, SCHEMA_VERSION + 1)]
        assert all(catalog.schema_version() == SCHEMA_VERSION for catalog in opened)
    finally:
        for catalog in opened:
            catalog.dispose()


def test_two_processes_creating_a_catalog_at_once_both_succeed(workspace):
    barrier, opened = threading.Barrier(2), []

    def open_catalog():
        barrier.wait(timeout=60)
        opened.append(Catalog.open(workspace))

    errors = _in_threads(open_catalog, open_catalog)
    try:
        assert not errors, errors
        with opened[0].session() as session:
            assert session.scalars(select(SchemaVersion.version)).all() == [version for version, *_ in
                                                                            catalog_module.MIGRATIONS]
    finally:
        for catalog in opened:
            catalog.dispose()


def test_get_for_update_makes_a_second_session_wait_then_read_what_the_first_wrote(catalog):
    with catalog.session() as session:
        session.add(Round(number=1, strategy="random", budget=4))
        session.flush()
        round_id = session.scalar(select(Round.id))
    other = Catalog.open(catalog.workspace)  # another process's engine
    locked, seen = threading.Event(), []

    def first():
        with catalog.session() as session:
            row = get_for_update(session, Round, round_id)
            locked.set()
            time.sleep(1.0)  # the second session asks for the lock meanwhile
            row.labels_spent = 5

    def second():
        assert locked.wait(timeout=60)
        with other.session() as session:
            row = get_for_update(session, Round, round_id)
            seen.append(row.labels_spent)  # read under the lock: the first session's committed value
            row.labels_spent += 1

    try:
        errors = _in_threads(first, second)
        assert not errors, errors
        assert seen == [5]
        with catalog.session() as session:
            assert session.get(Round, round_id).labels_spent == 6
    finally:
        other.dispose()
