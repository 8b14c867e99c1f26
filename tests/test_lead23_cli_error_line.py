"""A one-line CLI error stays one line in an 80-column terminal or a pipe (rich wrapped it over three)."""

from __future__ import annotations

import errno

import pytest

from radloop.app import cli


def test_a_long_path_error_is_printed_on_one_line(monkeypatch, capsys):
    path = "/srv/radiology/archive/" + "workspace-of-the-musculoskeletal-section/" * 3 + "catalog.sqlite"

    def refuse():
        raise OSError(errno.EROFS, "the workspace is read-only: this command needs to write", path)

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(cli, "build_app", lambda: refuse)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"error: the workspace is read-only: this command needs to write: {path}"]
