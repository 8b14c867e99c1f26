"""`radloop ... --help`: boolean flags are listed without a value placeholder, options that take one keep it."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from radloop.app.cli import build_app


def _command_paths(command, prefix=()):
    yield list(prefix)
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*prefix, name))


def _help(app, args):
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_flags_render_without_a_type_in_every_help():
    app = build_app()
    paths = list(_command_paths(typer.main.get_command(app)))
    assert len(paths) > 10
    for path in paths:
        output = _help(app, path)
        assert "--help" in output
        assert "<bool>" not in output, (path, [line for line in output.splitlines() if "<bool>" in line])


@pytest.mark.parametrize(("args", "flag", "valued"), [
    (["round", "start"], "--no-push", "--budget"),
    (["train"], "--no-register", "--config"),
    (["ingest"], "--json", "--images"),
])
def test_flag_rows_have_help_and_valued_options_keep_their_type(args, flag, valued):
    output = _help(build_app(), args)
    rows = [line for line in output.splitlines() if line.startswith("│")]  # the options panel
    flag_line = next(line for line in rows if f"{flag} " in line)
    valued_line = next(line for line in rows if f"{valued} " in line)
    assert not flag_line.split(flag, 1)[1].split()[0].startswith("<")  # the flag's help follows it directly
    assert "<" in valued_line  # e.g. --budget <int range>, --config <path>
    assert "--help" in output and "Show this message and exit." in output
