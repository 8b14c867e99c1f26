"""`radloop round finish --round N`: a script's guard, handed to ``finish_round(number=N)``, which refuses when
another round is open (walk 23h added the check to the function; the CLI had no way to ask for it)."""

from __future__ import annotations

from typer.testing import CliRunner


def test_round_finish_passes_the_round_number_and_prints_the_refusal(tmp_path, monkeypatch):
    import radloop.app.rounds as rounds
    from radloop.app.cli import build_app
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import resolve_workspace

    Catalog.open(resolve_workspace(tmp_path / "ws").ensure()).dispose()
    asked = []

    def finish_round(catalog, *, progress=None, simulate=None, number=None):
        asked.append(number)
        raise rounds.RoundError(f"round {number} is not open any more (round 3 is)")

    monkeypatch.setattr(rounds, "finish_round", finish_round)
    result = CliRunner().invoke(build_app(), ["round", "finish", "--round", "2", "--simulate",
                                              "--workspace", str(tmp_path / "ws")])
    assert asked == [2], (result.output, repr(result.exception))
    assert result.exit_code == 2
    assert "round 2 is not open any more (round 3 is)" in result.output
