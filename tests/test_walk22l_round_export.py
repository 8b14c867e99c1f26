"""`round start --no-push` (walk 22g): the batch is only written to an import file, yet `round start` and `round
status` showed the state "pushed" with 0 pending, and status printed the same advice twice.  The stored state
stays "pushed" (every reader knows it); what is shown says "exported", and reports carry where the batch went."""

from __future__ import annotations

import json

import pytest

from ls_fake import FakeLabelStudio, bind_fake, use_fake
from rounds_workspace import build_rounds_catalog


@pytest.fixture
def rounds_catalog(tmp_path, test_catalog_url, monkeypatch):
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "RADLOOP_LS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 24)
    yield catalog
    catalog.dispose()


def _cli(catalog, *arguments):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [*arguments, "--workspace", str(catalog.workspace.root)],
                              env={"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "COLUMNS": "250"})


def _state_cell(text: str) -> str:
    """The state column of the status table's first round row."""
    row = next(line for line in text.splitlines() if line.startswith("│ 1 "))
    return row.split("│")[2].strip()


def test_a_no_push_round_shows_exported_with_its_tasks_outside_label_studio(rounds_catalog):
    catalog = rounds_catalog
    started = _cli(catalog, "round", "start", "--strategy", "random", "--budget", "3", "--no-push",
                   "--set", "dataset=fracture")
    assert started.exit_code == 0, started.output
    flat = " ".join(started.output.split())
    assert "state exported" in flat and "not_in_label_studio 3" in flat and "handed_out import file" in flat
    as_json = json.loads(_cli(catalog, "round", "status", "--json").stdout)["rounds"][0]
    assert as_json["state"] == "pushed"  # stored name, for scripts and the other readers
    assert as_json["handed_out"] == "import file" and as_json["not_in_label_studio"] == 3
    status = _cli(catalog, "round", "status")
    assert status.exit_code == 0, status.output
    assert _state_cell(status.output) == "exported"
    text = " ".join(status.output.split())
    assert "round 1: 3 task(s) not in Label Studio yet: import the import file" in text
    assert "round 1: batch written to" not in text  # the hint above says it, with today's count
    # starting again resumes it, and says so in the shown state (lead, after walk 22l's report: "open in state
    # pushed")
    again = _cli(catalog, "round", "start", "--strategy", "random", "--budget", "3", "--no-push",
                 "--set", "dataset=fracture")
    assert again.exit_code == 0, again.output
    assert "resumed round 1 (open in state exported)" in " ".join(again.output.split()), again.output


def test_a_round_pushed_to_label_studio_still_shows_pushed(rounds_catalog, monkeypatch):
    from radloop.app.round_record import shown_state
    from radloop.app.rounds import start_round

    catalog = rounds_catalog
    bind_fake(catalog)
    use_fake(monkeypatch, FakeLabelStudio())
    report = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    assert report.state == "pushed" and report.handed_out == "Label Studio" and report.not_in_label_studio == 0
    assert shown_state(report) == "pushed"
    assert _state_cell(_cli(catalog, "round", "status").output) == "pushed"


def test_the_app_shows_an_exported_round_and_its_next_step(rounds_catalog):
    """The app's rounds table said "pushed" for a --no-push round (lead, after walk 22l's report)."""
    from radloop.app import next_steps, views_rounds

    catalog = rounds_catalog
    assert _cli(catalog, "round", "start", "--strategy", "random", "--budget", "3", "--no-push",
                "--set", "dataset=fracture").exit_code == 0
    frame = views_rounds.rounds_frame(catalog)
    assert frame["state"].tolist() == ["exported"]
    step = next_steps.open_round(1, "exported")
    assert "import file" in step and "--simulate" in step


def test_the_queue_and_round_control_show_exported_too(rounds_catalog):
    """The Queue page's and Round control's State metric still said "pushed" for a --no-push round (walk 23b)."""
    from radloop.app import views_rounds

    catalog = rounds_catalog
    assert _cli(catalog, "round", "start", "--strategy", "random", "--budget", "3", "--no-push",
                "--set", "dataset=fracture").exit_code == 0
    latest = views_rounds.latest_round(catalog)
    queue = views_rounds.selection_queue(catalog, latest.round_id)
    assert (latest.state, latest.shown_state) == ("pushed", "exported")  # stored vs shown
    assert queue.round.shown_state == "exported"
