"""A database error the environment causes (disk full, read-only, a lock held too long, the server down) reaching
the CLI is one line with what to do, never a traceback with the SQL statement and its values; any other database
error (a bug) keeps its traceback."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from radloop.app import cli


def _raising(message):
    def run():
        raise OperationalError("INSERT INTO images (id, meta) VALUES (?, ?)", ("I-1", "{'patient': 'X'}"),
                               sqlite3.OperationalError(message))
    return lambda: run


@pytest.mark.parametrize("message, hint", [
    ("database or disk is full", "free space and run the same command again"),
    ("attempt to write a readonly database", "where the workspace is writable"),
    ("database is locked", "run the same command again"),
    ("unable to open database file", "cannot be reached"),
])
def test_environment_database_errors_are_one_line(monkeypatch, capsys, message, hint):
    monkeypatch.setattr(cli, "build_app", _raising(message))
    monkeypatch.delenv("RADLOOP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: catalog database: {message}: ") and hint in lines[0]
    assert "INSERT" not in lines[0] and "patient" not in lines[0]


def test_other_database_errors_keep_their_traceback(monkeypatch):
    monkeypatch.setattr(cli, "build_app", _raising("no such column: images.colour"))
    with pytest.raises(OperationalError):
        cli.main()
