"""Walkthrough 23i (storage): a workspace opened with read-only rights, and a workspace whose disk is full.

Measured by hand (as root: a read-only bind mount, ``mount --bind`` + ``mount -o remount,ro,bind``; a 1 MB tmpfs
filled with ``dd``): before, `radloop info` on the read-only workspace ended in a traceback (``unable to open
database file`` at ``PRAGMA journal_mode=WAL``: SQLite cannot make the WAL's ``-shm`` file; ``mode=ro`` alone
fails the same way); on the full disk every command ended in ``disk I/O error`` at open, ``database or disk is
full`` at commit, or ``[Errno 28]`` naming no file from the ingest lock.  Root ignores permissions, so the tests
make the workspace look read-only to radloop's check (``os.access``) and raise the errors SQLite raised there.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import types

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from radloop.core import catalog as catalog_module
from radloop.core import ingest_lock as ingest_lock_module
from radloop.core import workspace as workspace_module
from radloop.core.catalog import Catalog
from radloop.core.schema import IngestError

DISK_FULL = "No space left on device (disk full)"
READ_ONLY = "the workspace is read-only: this command needs to write"
SQLITE_ONLY = pytest.mark.skipif(os.environ.get("RADLOOP_TEST_DATABASE") == "postgres",
                                 reason="SQLite catalog only (its file and folder)")


def _catalog_file(workspace) -> str:
    return str(workspace.root / "catalog.sqlite")


def _looks_read_only(monkeypatch, workspace) -> None:
    """``os.access(..., W_OK)`` false under the workspace, as for a user with read-only rights (not root)."""
    real_access = os.access
    root = str(workspace.root)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(path).startswith(root):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@SQLITE_ONLY
def test_a_read_only_workspace_opens_for_reading_and_refuses_writes_in_one_line(workspace, monkeypatch, capsys):
    writer = Catalog.open(workspace)  # a catalog someone else wrote, then closed
    with writer.session() as session:
        session.add(IngestError(run_id="r0", path="/a.png", stage="decode", reason="bad"))
    writer.dispose()
    _looks_read_only(monkeypatch, workspace)
    before = sorted(os.listdir(workspace.root))
    catalog = Catalog.open(workspace, create=False)
    try:
        assert catalog.counts()["ingest_errors"] == 1
        with pytest.raises(OSError) as caught:
            with catalog.session() as session:
                session.add(IngestError(run_id="r1", path="/b.png", stage="decode", reason="bad"))
        assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
            errno.EROFS, READ_ONLY, _catalog_file(workspace))
        assert catalog.counts()["ingest_errors"] == 1
    finally:
        catalog.dispose()
    assert sorted(os.listdir(workspace.root)) == before  # immutable: no -wal / -shm file made
    # `radloop info` reads it (before: a traceback at PRAGMA journal_mode=WAL)
    from radloop.app import cli

    monkeypatch.setenv("RADLOOP_WORKSPACE", str(workspace.root))
    monkeypatch.setattr(sys, "argv", ["radloop", "info"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None)
    assert "ingest_errors" in capsys.readouterr().out


@SQLITE_ONLY
def test_the_read_only_check_sees_permissions_and_read_only_mounts(workspace, monkeypatch):
    Catalog.open(workspace).dispose()
    path = _catalog_file(workspace)
    assert not catalog_module._read_only(path)
    assert not catalog_module._read_only(str(workspace.root / "missing.sqlite"))  # created, not opened read-only
    monkeypatch.setattr(os, "statvfs", lambda _path: types.SimpleNamespace(f_flag=os.ST_RDONLY))
    assert catalog_module._read_only(path)
    monkeypatch.undo()
    _looks_read_only(monkeypatch, workspace)
    assert catalog_module._read_only(path)


@SQLITE_ONLY
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_workspace_without_write_permission_is_read(workspace):
    Catalog.open(workspace).dispose()
    folder_mode, file_mode = workspace.root.stat().st_mode, (workspace.root / "catalog.sqlite").stat().st_mode
    os.chmod(workspace.root / "catalog.sqlite", 0o444)
    os.chmod(workspace.root, 0o555)
    try:
        catalog = Catalog.open(workspace, create=False)
        assert catalog.counts()["images"] == 0
        with pytest.raises(OSError) as caught:
            with catalog.session() as session:
                session.add(IngestError(run_id="r1", path="/b.png", stage="decode", reason="bad"))
        assert caught.value.errno == errno.EROFS
        catalog.dispose()
    finally:
        os.chmod(workspace.root, folder_mode)
        os.chmod(workspace.root / "catalog.sqlite", file_mode)


def _full_error(statement: str = "COMMIT") -> OperationalError:
    if os.environ.get("RADLOOP_TEST_DATABASE") == "postgres":
        cause = 'could not extend file "base/1/2": No space left on device'
    else:
        cause = "database or disk is full"
    return OperationalError(statement, {}, sqlite3.OperationalError(cause))


def test_a_full_disk_at_open_is_one_line_naming_the_catalog(workspace, monkeypatch):
    def full(_engine):
        raise _full_error("PRAGMA journal_mode=WAL")

    monkeypatch.setattr(catalog_module, "migrate", full)
    with pytest.raises(OSError) as caught:
        Catalog.open(workspace)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.strerror == DISK_FULL + ": could not write the catalog (opening it)"


@SQLITE_ONLY
def test_sqlites_disk_io_error_at_open_on_a_full_disk_says_disk_full(workspace, monkeypatch):
    def io_error(_engine):
        raise OperationalError("PRAGMA journal_mode=WAL", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(catalog_module, "migrate", io_error)
    monkeypatch.setattr(workspace_module, "_no_space_left", lambda _path: True)
    with pytest.raises(OSError) as caught:
        Catalog.open(workspace)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, _catalog_file(workspace))
    monkeypatch.setattr(workspace_module, "_no_space_left", lambda _path: False)
    with pytest.raises(OperationalError):  # another I/O error is not called a full disk
        Catalog.open(workspace)


def test_a_full_disk_at_commit_is_one_line_naming_the_catalog(catalog):
    def full(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO INGEST_ERRORS"):
            raise _full_error(statement)

    event.listen(catalog.engine, "before_cursor_execute", full)
    try:
        with pytest.raises(OSError) as caught:
            with catalog.session() as session:  # flushed at commit
                session.add(IngestError(run_id="r1", path="/b.png", stage="decode", reason="bad"))
    finally:
        event.remove(catalog.engine, "before_cursor_execute", full)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.strerror == DISK_FULL + ": could not write the changes to the catalog (none was kept)"
    if catalog.engine.dialect.name == "sqlite":
        assert caught.value.filename == _catalog_file(catalog.workspace)
    assert catalog.counts()["ingest_errors"] == 0


def test_a_full_disk_writing_the_ingest_lock_names_the_lock_file(tmp_path, monkeypatch):
    if ingest_lock_module.fcntl is None:
        pytest.skip("no fcntl: no lock file is written")

    def no_space(_fd, _data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest_lock_module, "os", types.SimpleNamespace(getpid=os.getpid, write=no_space))
    with pytest.raises(OSError) as caught:
        with ingest_lock_module.ingest_lock(tmp_path, "run-1"):
            pass
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / ingest_lock_module.LOCK_NAME)
    assert caught.value.strerror == DISK_FULL + ": could not write the ingest lock file"
    monkeypatch.undo()
    with ingest_lock_module.ingest_lock(tmp_path, "run-2") as held:  # released: the next ingest takes it
        assert held
